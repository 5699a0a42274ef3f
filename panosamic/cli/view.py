"""``panosamic view``: write the 360-degree viewer of a segment run and open it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "view",
        help="open a segment run in the 360-degree viewer (look around, classes, point clouds)",
        description=(
            "Write OUT_DIR/viewer/index.html (a page that works offline, from file://) for the "
            "panoramas of a `panosamic segment` output folder and open it in the browser: the "
            "panorama to look around with the segmentation overlaid, a legend with per-class "
            "toggles, the class under the pointer, the list of panoramas, and the labelled point "
            "cloud where one was written (--save pointcloud)."
        ),
    )
    p.add_argument(
        "out_dir", type=Path, metavar="OUT_DIR", help="a `panosamic segment` output folder"
    )
    p.add_argument("--no-open", action="store_true", help="only write the page")
    p.add_argument(
        "--max-width",
        type=int,
        default=2048,
        help="pictures wider than this are scaled down [2048]",
    )
    p.add_argument(
        "--cloud-points",
        type=int,
        default=100_000,
        help="points of each cloud in the page [100000]",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import webbrowser

    from ..viewer import ViewerOptions, write_viewer

    options = ViewerOptions(args.max_width, args.cloud_points)
    page = write_viewer(args.out_dir, options, progress=sys.stderr.isatty())
    for name, why in page.skipped:
        print(f"left out {name}: {why}", file=sys.stderr)
    print(page.index)
    if not args.no_open:
        webbrowser.open(page.index.resolve().as_uri())
    return 0
