"""The real-time anonymizing service: sources, windowing, the pipeline, ZeroMQ publishing.

Built on `anonynoise`; see ../shared/docs/DESIGN.md for the data flow.
"""
