"""The ``panosamic`` command.

Each sub-command lives with the code it drives and registers itself through a
``register(subparsers)`` function; heavy imports happen inside the handlers so
that ``panosamic --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__

# Modules that provide ``register(subparsers)``, in the order of ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "panosamic.commands.segment",
    "panosamic.commands.weights",
    "panosamic.data.commands",
    "panosamic.train.commands",
    "panosamic.eval.commands",
    "panosamic.commands.export",
    "panosamic.commands.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="panosamic",
        description="Semantic segmentation of 360-degree panoramas (PanoSAMic).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"panosamic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # a command group that is not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        if args.debug:
            raise
        print(f"panosamic {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
