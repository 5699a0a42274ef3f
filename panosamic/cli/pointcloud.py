"""``panosamic pointcloud``: labelled point clouds of a segment run or of a prepared dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import options


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "pointcloud",
        help="labelled point clouds (PLY) of a segment run or of a prepared dataset's samples",
        description=(
            "Write a binary PLY per panorama (x, y, z in metres in the camera frame: x forward at "
            "the image centre, y left, z up; red, green, blue; label; instance, -1 for none; "
            "confidence) and, with camera poses, one world-frame cloud of the whole capture. "
            "INPUT is a `panosamic segment` output folder (the clouds go into each panorama's "
            "folder) or a prepared dataset folder (its ground-truth labels; needs --out)."
        ),
    )
    p.add_argument(
        "input", type=Path, metavar="INPUT", help="segment output folder or prepared dataset"
    )
    p.add_argument(
        "--out", type=Path, help="prepared dataset: where the clouds go (<out>/<area>/<sample>.ply)"
    )
    p.add_argument(
        "--samples", nargs="+", metavar="AREA/SAMPLE", help="prepared dataset: these samples only"
    )
    options.add(p, "dataset", more="of a prepared dataset (default: read off its folders)")
    p.add_argument("--stride", type=int, default=1, help="every N-th pixel in both directions [1]")
    p.add_argument(
        "--voxel", type=float, help="per-panorama clouds: one point per cube of this side (m)"
    )
    poses = p.add_mutually_exclusive_group()
    poses.add_argument(
        "--poses",
        type=Path,
        help="camera-to-world 4x4 per panorama: a JSON {name: matrix} or CSV file",
    )
    poses.add_argument(
        "--stanford-poses",
        type=Path,
        metavar="RAW_DIR",
        help="Stanford2D3DS's own pose files, from its raw download (area_*/pano/pose/)",
    )
    p.add_argument(
        "--merge",
        type=Path,
        metavar="FILE.ply",
        help="with poses: write all clouds moved into the world frame as one cloud",
    )
    p.add_argument(
        "--merge-voxel", type=float, default=0.05, help="voxel of the merged cloud in metres [0.05]"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..clouds.capture import clouds_of_output, clouds_of_prepared, read_capture_poses
    from ..clouds.ply import write_ply
    from ..inference.sources import prepared_dataset_name

    if args.stride < 1:
        raise ValueError(f"--stride must be at least 1, got {args.stride}")
    if args.merge and not (args.poses or args.stanford_poses):
        raise ValueError("--merge needs camera poses: --poses FILE or --stanford-poses RAW_DIR")
    if (args.poses or args.stanford_poses) and not args.merge:
        raise ValueError("poses are for merging: add --merge FILE.ply (the merged cloud)")
    if args.stanford_poses:
        print(
            "warning: --stanford-poses reads camera_rt_matrix as the dataset's README describes "
            "it, which has not been checked against real Stanford2D3DS panoramas; look at the "
            "merged cloud before relying on it (docs/clouds.md)",
            file=sys.stderr,
        )
    poses = read_capture_poses(args.poses, args.stanford_poses) if args.merge else None
    common = {
        "stride": args.stride,
        "voxel": args.voxel,
        "poses": poses,
        "merge_voxel": args.merge_voxel,
    }
    if (args.input / "cache_samples_file_names.json").is_file():
        if args.out is None:
            raise ValueError("a prepared dataset needs --out: where its clouds go")
        dataset = prepared_dataset_name(args.input, args.dataset)
        run = clouds_of_prepared(args.input, args.out, dataset, samples=args.samples, **common)
    else:
        run = clouds_of_output(args.input, **common)
    for name, note in run.skipped:
        print(f"no cloud for {name}: {note}", file=sys.stderr)
    for name, reason in run.failed:
        print(f"failed: {name}: {reason}", file=sys.stderr)
    extra = f", {len(run.skipped)} panoramas without depth" if run.skipped else ""
    print(f"{len(run.written)} point clouds written{extra}")
    if run.merged is not None:
        write_ply(args.merge, run.merged, ["panosamic merged capture"])
        print(
            f"merged cloud of {len(run.written)} panoramas, {len(run.merged)} points -> {args.merge}"
        )
    return 1 if run.failed else 0
