import sys

from bench.cli import main

# Guarded: the baseline's processes are spawned and import this module as __mp_main__.
if __name__ == "__main__":
    sys.exit(main())
