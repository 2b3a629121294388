"""python -m stream: the anonymizing service (anonynoise-stream)."""

import sys

from stream.cli import main

sys.exit(main())
