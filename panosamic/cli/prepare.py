"""Sub-commands ``prepare``, ``synth`` and ``normals``."""

from __future__ import annotations

import argparse
from pathlib import Path

DATASET_CHOICES = ("stanford2d3ds", "matterport3d", "structured3d")


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_prepare(subparsers)
    _register_synth(subparsers)
    _register_normals(subparsers)


def _register_prepare(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="convert a raw dataset download into the processed layout for training",
        description=(
            "Convert a raw download (Stanford2D3DS, 360BEV Matterport3D, Structured3D) into "
            "the processed layout: lossless WebP RGB, 16-bit PNG depth, depth masks, normals, "
            "labels and the cache files. Parallel, resumable (finished samples are skipped), "
            "each sample written atomically."
        ),
    )
    p.add_argument("dataset", choices=DATASET_CHOICES)
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
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from .prepare import prepare_dataset

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


def _register_synth(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write synthetic panoramas in a dataset's raw layout",
        description=(
            "Render random furnished rooms (exact RGB, depth, normals, semantic and instance "
            "labels) and write them in the raw download layout of a dataset, ready for "
            "`panosamic prepare`."
        ),
    )
    p.add_argument("--dataset", required=True, choices=DATASET_CHOICES)
    p.add_argument("--out", required=True, type=Path, help="raw dataset folder to write")
    p.add_argument("--count", type=int, default=8, help="number of panoramas (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=512, help="panorama height; width = 2 x height")
    p.add_argument("--per-location", type=int, default=1, help="samples per area or scene")
    p.add_argument(
        "--broken",
        type=int,
        default=0,
        help="Structured3D: make the last N rooms broken and list them",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    p.add_argument(
        "--prepare", type=Path, default=None, metavar="OUT_DIR", help="then prepare into OUT_DIR"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from .synth import describe, write_synthetic_dataset

    if args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    if args.height < 8:
        raise ValueError(f"--height must be at least 8, got {args.height}")
    plan = write_synthetic_dataset(
        args.dataset,
        args.out,
        args.count,
        args.seed,
        args.height,
        2 * args.height,
        per_location=args.per_location,
        broken=args.broken,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(f"wrote {len(plan)} synthetic {args.dataset} panoramas to {args.out}: {describe(plan)}")
    if args.prepare is not None:
        from .prepare import prepare_dataset

        prepare_dataset(
            args.dataset,
            args.out,
            args.prepare,
            workers=args.workers,
            progress=not args.no_progress,
        )
    return 0


def _register_normals(subparsers: argparse._SubParsersAction) -> None:
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
        choices=DATASET_CHOICES,
        default=None,
        help="single file: take the invalid value from this dataset's raw depth encoding",
    )
    p.add_argument("--smooth", type=int, default=1, help="smoothing radius in pixels (0: off)")
    p.add_argument(
        "--overwrite", action="store_true", help="dataset: replace existing normals.webp"
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_normals)


def _run_normals(args: argparse.Namespace) -> int:
    from .normals import write_dataset_normals, write_normals_image

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
        from .catalog import dataset_info

        invalid = dataset_info(args.dataset).depth_invalid if args.dataset else 0
    coverage = write_normals_image(args.input, args.out, invalid_value=invalid, smooth=args.smooth)
    print(f"normals of {coverage:.1%} of the pixels -> {args.out}")
    return 0
