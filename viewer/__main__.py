"""python -m viewer: the live viewer (anonynoise-view)."""

import sys

from viewer.cli import main

sys.exit(main())
