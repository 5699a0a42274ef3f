"""``python panosamic/evaluation/evaluate.py ...``: the reference's evaluation script as the model
card runs it, with the reference's flags, mapped onto ``panosamic evaluate``
(:mod:`panosamic.cli.reference_scripts`)."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run by path, Python puts this folder first on the import path, where its modules
    # (metrics, train, ...) would shadow top-level ones of the same name.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    from panosamic.cli.reference_scripts import main

    sys.exit(main("evaluate"))
