"""The fuzz suite's fast subset: named mutations of every real sample format through `anonynoise
info`, `anonynoise anonymize` and `anonynoise-stream --replay ... --fast`.

Every case must end in time (cases.TIMEOUTS) with exit 0 or 2, at most one line on stderr
(exactly one for exit 2) and no traceback, under an address-space limit of
runner.AS_LIMIT. After MAX_TIMEOUTS timeouts in a format, its remaining cases fail at once
instead of waiting out more hangs. The full run: `python -m tests.fuzz --cases 200`
(tests/fuzz/__main__.py). FUZZ_RUNNER=subprocess runs each command in a fresh interpreter
instead of the fork server.
"""

from __future__ import annotations

import collections

import pytest

from .cases import FAST, MissingData, named_case, run_case
from .runner import describe, make_runner

MAX_TIMEOUTS = 3  # per format: after this many hangs the format's other cases fail at once
_timeouts: collections.Counter = collections.Counter()

PARAMS = [pytest.param(spec, command, id=f"{spec.fmt}-{spec.name}-{command}")
          for spec in FAST for command in spec.commands]


@pytest.fixture(scope="module")
def runner():
    r = make_runner()
    yield r
    r.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("spec, command", PARAMS)
def test_mutated_file_ends_cleanly(spec, command, runner, folder):
    if _timeouts[spec.fmt] >= MAX_TIMEOUTS:
        pytest.fail(f"not run: {_timeouts[spec.fmt]} cases of {spec.fmt} already timed out "
                    "(see the first failures of this format)", pytrace=False)
    try:
        case = named_case(spec)
    except MissingData as e:
        pytest.skip(str(e))
    outcome = run_case(runner, case, command, folder, variant=spec.variant)
    if outcome.failure == "timeout":
        _timeouts[spec.fmt] += 1
    if outcome.failure is not None:
        pytest.fail(f"{outcome.failure}: {case.id} through {command}\n"
                    f"{describe(outcome.result)}\nrerun: {outcome.shell}\n(or: python -m "
                    f"tests.fuzz --named {case.id} --commands {command} --out DIR)",
                    pytrace=False)
