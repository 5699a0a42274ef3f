"""The ``panosamic`` command: one thin module per sub-command, calling library functions.

Each module registers itself through ``register(subparsers)``; options shared by
several commands are declared once in :mod:`.options`. Heavy imports happen
inside the handlers, so that ``panosamic --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__

# Modules that provide ``register(subparsers)``, in the order of ``--help``.
COMMAND_MODULES: tuple[str, ...] = tuple(
    f"panosamic.cli.{name}"
    for name in (
        "segment",
        "pointcloud",
        "view",
        "weights",
        "prepare",
        "synth",
        "normals",
        "train",
        "evaluate",
        "export",
        "bench",
        "info",
    )
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
        importlib.import_module(name).register(sub)
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
