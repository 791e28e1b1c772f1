"""``python -m qhelpers``: the course's command-line tool (see ``qhelpers.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
