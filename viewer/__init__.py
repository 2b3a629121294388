"""The pyqtgraph live viewer of the anonymized stream (`anonynoise-view`, `python -m viewer`).

    render.py    events -> RGB picture (pure numpy): ON, OFF, both, background in fixed colours
    overlay.py   the status text (pure): rates, age since receipt, drops, model, sensor
    receiver.py  a StreamClient in a background thread keeping only the newest window
    window.py    thin Qt widgets: the live ViewerWindow and the SideBySideView preview
    app.py       run_viewer(ViewerConfig): receiver + window + event loop, screenshots, timeout
    cli.py       the command line
    preview.py   `anonynoise-preview`: the stream (stream.cli) with raw beside anonymized

Qt (PySide6, through pyqtgraph) is the `viewer` extra: the core and the service install
without it.
"""

# the viewer extra (setup.cfg): what `pip install 'anonynoise[viewer]'` adds
EXTRA_MODULES = ("pyqtgraph", "PySide6")


def require_viewer_extra(prog: str) -> None:
    """Raise a one-line AnonyNoiseError naming the extra when Qt is not installed; a command
    calls it first, so that even its --help says so rather than a traceback."""
    from importlib.util import find_spec

    from anonynoise.errors import AnonyNoiseError

    # found, not imported: importing pyqtgraph here would pick its Qt binding before
    # viewer.window says which
    for name in EXTRA_MODULES:
        if find_spec(name) is None:
            raise AnonyNoiseError(f"{prog} needs the viewer extra ({name} is not installed): "
                                  "pip install 'anonynoise[viewer]'")
