"""``panosamic normals``: surface normals from depth, for a prepared dataset or one file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.catalog import DATASETS
from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "normals",
        help="compute surface normals from depth (a prepared dataset or one depth image)",
        description=(
            "Compute surface normals from equirectangular depth and encode them like the "
            "datasets' normals images (rgb = (n + 1) * 127.5, camera frame x forward, y left, "
            "z up). INPUT is a prepared dataset folder (writes normals.webp into every sample) "
            "or one depth file (16-bit PNG or float .npy; needs --out)."
        ),
    )
    p.add_argument("input", type=Path, help="prepared dataset folder or depth file")
    p.add_argument("--out", type=Path, default=None, help="output image for a single depth file")
    p.add_argument(
        "--invalid-value",
        type=float,
        default=None,
        help="single file: raw value of missing depth (default 0; Stanford2D3DS uses 65535)",
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="single file: take the invalid value from this dataset's raw depth encoding",
    )
    p.add_argument("--smooth", type=int, default=1, help="smoothing radius in pixels (0: off)")
    p.add_argument(
        "--overwrite", action="store_true", help="dataset: replace existing normals.webp"
    )
    options.add(p, "workers", more="(default: all CPU cores)")
    options.add(p, "no_progress")
    p.set_defaults(func=_run_normals)


def _run_normals(args: argparse.Namespace) -> int:
    from ..data.normals import write_dataset_normals, write_normals_image

    if args.smooth < 0:
        raise ValueError(f"--smooth must be >= 0, got {args.smooth}")
    if args.input.is_dir():
        written, skipped = write_dataset_normals(
            args.input,
            overwrite=args.overwrite,
            smooth=args.smooth,
            workers=args.workers,
            progress=not args.no_progress,
        )
        print(f"normals: {written} written, {skipped} already had normals.webp -> {args.input}")
        return 0
    if not args.input.is_file():
        raise FileNotFoundError(
            f"{args.input} is neither a prepared dataset folder nor a depth file"
        )
    if args.out is None:
        raise ValueError("--out is required for a single depth file")
    invalid = args.invalid_value
    if invalid is None:
        from ..data.catalog import dataset_info

        invalid = dataset_info(args.dataset).depth_invalid if args.dataset else 0
    coverage = write_normals_image(args.input, args.out, invalid_value=invalid, smooth=args.smooth)
    print(f"normals of {coverage:.1%} of the pixels -> {args.out}")
    return 0
