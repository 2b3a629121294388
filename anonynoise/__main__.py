import sys

from anonynoise.cli import main

sys.exit(main())
