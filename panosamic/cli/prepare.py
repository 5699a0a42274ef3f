"""``panosamic prepare``: a raw dataset download -> the processed layout training reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.catalog import DATASETS
from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="convert a raw dataset download into the processed layout for training",
        description=(
            "Convert a raw download (Stanford2D3DS, 360BEV Matterport3D, Structured3D, ToF-360) into "
            "the processed layout: lossless WebP RGB, 16-bit PNG depth, depth masks, normals, "
            "labels and the cache files. Parallel, resumable (finished samples are skipped), "
            "each sample written atomically."
        ),
    )
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("raw_dir", type=Path, help="the raw dataset root")
    p.add_argument("out_dir", type=Path, help="where the prepared dataset goes")
    p.add_argument(
        "--scale",
        "-r",
        "--resize-image",
        dest="scale",
        nargs="?",
        const="0.25",
        default="auto",
        help="'auto' (default): resize to height 512 (512 x 1024), never upscaling; or a factor "
        "in (0, 1] (sizes truncated, as the reference). A bare -r means 0.25",
    )
    p.add_argument("--overwrite", action="store_true", help="rewrite finished samples and caches")
    options.add(p, "workers", more="(default: all CPU cores)")
    p.add_argument(
        "--normals-from-depth",
        action="store_true",
        help="also write normals.webp computed from depth (Matterport3D has no normals)",
    )
    p.add_argument(
        "--broken-files",
        type=Path,
        default=None,
        help="Structured3D: JSON list of broken files (default: RAW_DIR/assets/broken_files.json)",
    )
    options.add(p, "no_progress")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare_dataset

    prepare_dataset(
        args.dataset,
        args.raw_dir,
        args.out_dir,
        scale=args.scale,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=not args.no_progress,
        normals_from_depth=args.normals_from_depth,
        broken_files=args.broken_files,
    )
    return 0
