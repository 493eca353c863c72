"""``python -m multiviz.cli``: the same as the ``multiviz`` command."""

import sys

from multiviz.cli import main

sys.exit(main())
