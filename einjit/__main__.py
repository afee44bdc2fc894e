"""``python -m einjit``: the ``einjit`` command (see :mod:`einjit.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
