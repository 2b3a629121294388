"""The layers import one way (docs DESIGN.md): the core imports none of the others, the
service no viewer, training no service or viewer; nothing outside the core uses its private
names or the `anonynoise` command's module.

The checker reads the source with `ast`, so it sees every import: at the top, inside a
function (the lazy ones) and `importlib.import_module("...")` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("anonynoise", "stream", "train", "viewer")

# what each package must not import (experiments/ is not installed and may import anything)
FORBIDDEN = {
    "anonynoise": ("stream", "train", "viewer", "experiments"),
    "stream": ("viewer", "train", "experiments"),
    "train": ("stream", "viewer", "experiments"),
    "viewer": ("train", "experiments"),
}
COMMAND_MODULE = "anonynoise.cli"  # the `anonynoise` command: only its __main__ runs it
MAY_IMPORT_COMMAND = {"anonynoise/__main__.py", "anonynoise/cli.py"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(module: str | None, level: int, relpath: str) -> str:
    """The dotted name of `from <level dots><module> import ...` in the file at relpath."""
    if not level:
        return module or ""
    package = Path(relpath).with_suffix("").parts[:-1]
    if Path(relpath).name == "__init__.py":
        package = Path(relpath).parent.parts
    base = package[:len(package) - (level - 1)]
    return ".".join((*base, *([module] if module else [])))


def imports(tree: ast.AST, relpath: str):
    """(line, module, imported names) for every import in the tree, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            yield (node.lineno, _absolute(node.module, node.level, relpath),
                   tuple(a.name for a in node.names))
        elif isinstance(node, ast.Call) and node.args \
                and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value, ()


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def check_file(path: Path, root: Path) -> list[str]:
    """The rules this file breaks, one 'file:line: why' each."""
    relpath = path.relative_to(root).as_posix()
    layer = relpath.split("/")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=relpath)
    problems = []
    for line, module, names in imports(tree, relpath):
        # `from anonynoise import cli` imports anonynoise.cli as surely as `import` does
        targets = [module] + [f"{module}.{n}" for n in names if n != "*"]
        where = f"{relpath}:{line}"
        for bad in FORBIDDEN.get(layer, ()):
            if any(_under(t, bad) for t in targets):
                problems.append(f"{where}: {layer}/ imports {bad}/ ({module})")
                break
        if any(_under(t, COMMAND_MODULE) for t in targets) \
                and relpath not in MAY_IMPORT_COMMAND:
            problems.append(f"{where}: imports {COMMAND_MODULE}, the anonynoise command "
                            "(shared helpers are in anonynoise.cli_support)")
        if layer != "anonynoise" and _under(module, "anonynoise"):
            private = [p for p in module.split(".") + list(names) if _private(p)]
            if private:
                problems.append(f"{where}: uses the core's private {', '.join(private)} "
                                f"({module})")
    return problems


def check_tree(root: Path) -> list[str]:
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            problems += check_file(path, root)
    return problems


def _plant(root: Path, relpath: str, text: str) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checker_finds_planted_violations(tmp_path):
    _plant(tmp_path, "anonynoise/bad.py",
           "import numpy\n"
           "import stream.client\n"
           "def later():\n"
           "    from viewer.app import run_viewer\n"
           "    import importlib\n"
           "    return importlib.import_module('train.stages')\n")
    _plant(tmp_path, "stream/bad.py",
           "from anonynoise.io import open_events, _parse_sensor\n"
           "from anonynoise import cli\n"
           "from anonynoise import __version__\n"
           "from viewer import preview\n")
    _plant(tmp_path, "stream/sub/rel.py", "from ..cli import main\nfrom .. import pipeline\n")
    _plant(tmp_path, "train/bad.py", "import anonynoise.cli\nfrom stream.protocol import x\n")
    _plant(tmp_path, "viewer/ok.py",
           "import stream.client\nfrom anonynoise.events import EventBatch\n"
           "__import__('experiments.report')\n")
    _plant(tmp_path, "anonynoise/__main__.py", "from anonynoise.cli import main\n")
    _plant(tmp_path, "anonynoise/sub/__init__.py", "from .. import cli\n")
    command = ": imports anonynoise.cli, the anonynoise command (shared helpers are in " \
              "anonynoise.cli_support)"
    assert sorted(check_tree(tmp_path)) == sorted([
        "anonynoise/bad.py:2: anonynoise/ imports stream/ (stream.client)",
        "anonynoise/bad.py:4: anonynoise/ imports viewer/ (viewer.app)",
        "anonynoise/bad.py:6: anonynoise/ imports train/ (train.stages)",
        "anonynoise/sub/__init__.py:1" + command,
        "stream/bad.py:1: uses the core's private _parse_sensor (anonynoise.io)",
        "stream/bad.py:2" + command,
        "stream/bad.py:4: stream/ imports viewer/ (viewer)",
        "train/bad.py:1" + command,
        "train/bad.py:2: train/ imports stream/ (stream.protocol)",
        "viewer/ok.py:3: viewer/ imports experiments/ (experiments.report)",
    ])


def test_the_tree_keeps_the_layers():
    problems = check_tree(REPO)
    assert not problems, "layer rules broken:\n" + "\n".join(problems)
