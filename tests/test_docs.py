"""The documentation's Python examples run as they are written (docs/python-api.md)."""

import doctest
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("page", ["docs/python-api.md"])
def test_the_examples_of_a_page_run(page, tmp_path):
    pytest.importorskip("tonic")
    # the recording the page reads: 1 s of a synthetic person, as the page says
    made = subprocess.run([sys.executable, "-m", "anonynoise", "synth", "record",
                           str(tmp_path / "person.aedat4"), "--seconds", "1", "--seed", "1"],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = doctest.testfile(str(REPO / page), module_relative=False,
                                  optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    finally:
        os.chdir(cwd)
    assert result.attempted > 20 and result.failed == 0, result
