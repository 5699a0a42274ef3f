"""``python -m panosamic.cli ...`` (what ``torchrun ... -m panosamic.cli`` runs)."""

import sys

from . import main

sys.exit(main())
