"""``python -m panosamic ...``: the ``panosamic`` command."""

import sys

from .cli import main

sys.exit(main())
