"""``python -m dlsys.cli``: the same as the ``dlsys`` console script."""

import sys

from dlsys.cli.main import main

sys.exit(main())
