"""Dependencies by use (setup.cfg): the core and the service run without the extras.

`pip install anonynoise` has no Qt, matplotlib or tonic (extras `viewer`, `train`). A fresh
venv is too slow for the suite, so each command runs here in a Python where those packages
cannot be imported (sys.modules[name] = None makes `import name` raise ImportError): a
top-level or lazy import of one of them on the way fails the command.
"""

import configparser
import subprocess
import sys

from anonynoise.examples import clustered_stream
from anonynoise.io import read_events, write_events
from tests.conftest import REPO

EXTRAS_ONLY = ("PySide6", "pyqtgraph", "matplotlib", "tonic")


def without_extras(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `module`'s main(args) as its console script would, with EXTRAS_ONLY unimportable."""
    prelude = (f"import sys\nfor name in {EXTRAS_ONLY!r}:\n    sys.modules[name] = None\n"
               f"from {module} import main\nsys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", prelude, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_the_block_works():
    done = without_extras("anonynoise.cli", "--help")
    assert done.returncode == 0, done.stderr
    check = subprocess.run([sys.executable, "-c", f"import sys\nfor n in {EXTRAS_ONLY!r}:\n"
                            "    sys.modules[n] = None\nimport pyqtgraph"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and "import of pyqtgraph halted" in check.stderr


def test_the_stream_and_anonymize_run_without_the_extras(tmp_path):
    done = without_extras("stream.cli", "--help")
    assert done.returncode == 0 and "--replay" in done.stdout, done.stderr
    source, out = tmp_path / "in.aedat4", tmp_path / "out.aedat4"
    write_events(source, clustered_stream(64, 48, duration_s=0.3, rate=2e5, seed=3))
    done = without_extras("anonynoise.cli", "anonymize", str(source), str(out))
    assert done.returncode == 0, done.stderr
    assert "anonymized events" in done.stdout and read_events(out).sensor_size == (64, 48)


def test_the_viewer_commands_say_which_extra_is_missing_in_one_line():
    for module, prog in (("viewer.cli", "anonynoise-view"),
                         ("viewer.preview", "anonynoise-preview")):
        done = without_extras(module, "--help", timeout=60)
        assert done.returncode == 2, (prog, done.stderr)
        assert done.stderr.strip() == (f"{prog}: error: {prog} needs the viewer extra (pyqtgraph "
                                       "is not installed): pip install 'anonynoise[viewer]'")


def test_the_extras_hold_what_the_core_does_not_need():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")

    def names(text: str) -> set[str]:
        lines = (line.split("#")[0].strip() for line in text.splitlines())
        return {line.split(">")[0].split("<")[0].split("=")[0].strip().lower()
                for line in lines if line}

    core = names(cfg["options"]["install_requires"])
    extras = {k: names(v) for k, v in cfg["options.extras_require"].items()}
    assert not core & ({n.lower() for n in EXTRAS_ONLY} | {"pyside6-essentials"})
    assert {"pyqtgraph", "pyside6-essentials"} <= extras["viewer"]
    assert {"matplotlib", "tonic"} <= extras["train"]
    assert extras["viewer"] | extras["train"] <= extras["dev"]  # the tests run all of them
    packages = cfg["options.packages.find"]["include"].split()
    assert not any(p.startswith("experiments") or p.startswith("bench") for p in packages)
