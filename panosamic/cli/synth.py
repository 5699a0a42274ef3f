"""``panosamic synth``: synthetic panoramas in a dataset's raw layout (the test bed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write synthetic panoramas in a dataset's raw layout",
        description=(
            "Render random furnished rooms (exact RGB, depth, normals, semantic and instance "
            "labels) and write them in the raw download layout of a dataset, ready for "
            "`panosamic prepare`; with --views, several viewpoints of each room with their "
            "camera poses, as a capture (rgb/, depth/ in mm, normal/, semantic/, poses.json)."
        ),
    )
    options.add(p, "dataset", required=True)
    p.add_argument("--out", required=True, type=Path, help="raw dataset folder to write")
    p.add_argument("--count", type=int, default=8, help="number of panoramas (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=512, help="panorama height; width = 2 x height")
    p.add_argument("--per-location", type=int, default=1, help="samples per area or scene")
    p.add_argument(
        "--views",
        type=int,
        metavar="K",
        help="write a capture instead: K viewpoints of each of --count rooms, with poses.json",
    )
    p.add_argument(
        "--broken",
        type=int,
        default=0,
        help="Structured3D: make the last N rooms broken and list them",
    )
    options.add(p, "workers", more="(default: all CPU cores)")
    p.add_argument(
        "--prepare", type=Path, default=None, metavar="OUT_DIR", help="then prepare into OUT_DIR"
    )
    options.add(p, "no_progress")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from ..data.synth import describe, write_synthetic_dataset

    if args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    if args.height < 8:
        raise ValueError(f"--height must be at least 8, got {args.height}")
    if args.views is not None:
        return _write_views(args)
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
        from ..data.prepare import prepare_dataset

        prepare_dataset(
            args.dataset,
            args.out,
            args.prepare,
            workers=args.workers,
            progress=not args.no_progress,
        )
    return 0


def _write_views(args: argparse.Namespace) -> int:
    from ..data.viewpoints import write_capture

    if args.views < 1:
        raise ValueError(f"--views must be at least 1, got {args.views}")
    if args.prepare is not None or args.broken:
        raise ValueError("--views writes a capture, not a dataset: no --prepare or --broken")
    poses = write_capture(
        args.out,
        args.count,
        args.views,
        args.seed,
        args.height,
        dataset=args.dataset,
        progress=not args.no_progress,
    )
    print(
        f"wrote {len(poses)} panoramas ({args.count} rooms x {args.views} views) and their "
        f"poses to {args.out}; segment and merge them with\n"
        f"  panosamic segment {args.out}/rgb --depth '{{dir}}/../depth/{{stem}}.png' "
        f"--normals '{{dir}}/../normal/{{stem}}.png' --depth-scale 1000 "
        f"--save labels,pointcloud --out OUT\n"
        f"  panosamic pointcloud OUT --poses {args.out}/poses.json --merge capture.ply"
    )
    return 0
