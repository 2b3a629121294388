"""The fuzz suite: mutated copies of the real sample recordings (every format the readers
take) through `anonynoise info`, `anonynoise anonymize` and `anonynoise-stream --replay
--fast`. Each case must end within its timeout with exit 0 or 2, at most one line on stderr
(exactly one for exit 2), no traceback, under a 4 GiB address-space limit.

    mutators.py          the mutations: (bytes, numpy Generator) -> bytes
    cases.py             bases cut from ../shared/data/real, random and named cases, commands
    runner.py            bounded runs (fork server or subprocess) and the predicate
    forkserver.py        the server that forks a child per command
    test_fuzz_files.py   the fast subset (part of the test suite)
    test_fuzz_harness.py the machinery's own tests
    __main__.py          the full run: python -m tests.fuzz --cases 200
"""
