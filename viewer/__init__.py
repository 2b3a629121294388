"""The pyqtgraph live viewer of the anonymized stream (`anonynoise-view`, `python -m viewer`).

    render.py    events -> RGB picture (pure numpy): ON, OFF, both, background in fixed colours
    overlay.py   the status text (pure): rates, age since receipt, drops, model, sensor
    receiver.py  a StreamClient in a background thread keeping only the newest window
    window.py    thin Qt widgets: the live ViewerWindow and the SideBySideView preview
    app.py       run_viewer(ViewerConfig): receiver + window + event loop, screenshots, timeout
    cli.py       the command line
"""
