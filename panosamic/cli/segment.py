"""``panosamic segment``: segment one panorama or a whole capture and write what people use."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..hub.catalog import DEFAULT_REPO_ID
from ..instances.config import POINT_GRIDS
from . import options

SAVE_CHOICES = (
    "labels", "color", "overlay", "panel", "instances", "masks", "probs", "pointcloud", "viewer",
)  # fmt: skip
DEFAULT_SAVE = "labels,color,overlay,panel,instances,masks"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment panoramas (one, a folder, a whole capture) and write labels, pictures, masks",
        description=(
            "Segment equirectangular panoramas with a published or local checkpoint, each into "
            "its own folder OUT/<name>/: labels.png (class index per pixel, palette PNG), "
            "color.png, overlay.png, panel.png, instances.png (when masks were found), "
            "masks.json (COCO RLE), probs.npy (with --save probs) and summary.json; plus "
            "OUT/run_summary.json and .csv. A re-run skips finished panoramas. Several "
            "processes: torchrun --nproc-per-node N -m panosamic.cli segment ..."
        ),
    )
    source = parser.add_argument_group("input")
    source.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="panorama files (any 2:1 size), folders, glob patterns, .txt lists (one path per "
        "line) or prepared dataset folders",
    )
    source.add_argument(
        "--demo", action="store_true", help="segment a synthetic room instead of files"
    )
    source.add_argument("--recursive", action="store_true", help="also the folders' sub-folders")
    source.add_argument(
        "--depth",
        metavar="FILE|TEMPLATE",
        help="depth of each panorama (16-bit PNG or float .npy): a file for one panorama, or a "
        "template such as '{dir}/../depth/{stem:rgb=depth}.png' ({dir}, {parent}, {stem}, "
        "{name}, {ext}; {field:old=new} replaces)",
    )
    source.add_argument(
        "--depth-scale",
        type=_positive,
        help="raw depth units per metre (Stanford2D3DS 512, Matterport3D 4000, Structured3D "
        "1000, float .npy in metres 1) [the checkpoint's dataset's]",
    )
    source.add_argument(
        "--depth-max",
        type=_positive,
        help="d_t in metres: depth at or beyond it maps to 0 (the checkpoint's training value) "
        "[recorded by our exports; else each panorama's 99.5 %% depth quantile]",
    )
    source.add_argument(
        "--depth-invalid",
        type=float,
        help="raw value of pixels without depth, besides 0, NaN and inf [Stanford2D3DS 65535]",
    )
    source.add_argument(
        "--normals",
        metavar="FILE|TEMPLATE",
        help="normals image of each panorama (RGB encoding, as in the datasets): a file or a template",
    )
    source.add_argument(
        "--normals-from-depth", action="store_true", help="compute the normals image from the depth"
    )
    options.add(source, "dataset", more="of prepared dataset folders, and whose class names to use")
    source.add_argument("--class-names", help=argparse.SUPPRESS)  # older spelling of --dataset

    model = options.add_model_source(parser, checkpoint_default=DEFAULT_REPO_ID)
    options.add(model, "device", default="cpu", more="[cpu]")
    options.add(model, "precision", default="fp32", more="[fp32]")
    model.add_argument("--no-instances", action="store_true", help="semantic path only (faster)")
    model.add_argument("--batch-size", type=int, default=1, help="panoramas per forward pass [1]")
    options.add(model, "workers", default=1, more="reading panoramas ahead of the model [1]")

    inst = parser.add_argument_group("instance masks (ignored with --no-instances)")
    inst.add_argument(
        "--no-refine",
        action="store_true",
        help="keep the raw semantic labels (default: majority vote inside each instance mask)",
    )
    inst.add_argument(
        "--points-per-side", type=int, default=None, help="SAM point grid per side (default 32)"
    )
    inst.add_argument(
        "--point-grid",
        choices=POINT_GRIDS,
        default=None,
        help="'image' skips the grid points in the canvas padding (half the work at 2:1)",
    )
    inst.add_argument(
        "--instance-modalities",
        nargs="+",
        default=None,
        metavar="MODALITY",
        help="modalities that get instance masks (default: all)",
    )
    inst.add_argument(
        "--exact-decoder",
        action="store_true",
        help="SAM's mask decoder in SAM's operation order, bit for bit (about twice as slow; "
        "default: the factored decoder, the same masks up to float32 round-off)",
    )

    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("panosamic_out"), help="output folder")
    out.add_argument(
        "--save",
        type=_save_kinds,
        default=DEFAULT_SAVE,
        help=f"what to write, comma-separated from {','.join(SAVE_CHOICES)} or 'all' "
        f"(summary.json always) [{DEFAULT_SAVE}]",
    )
    out.add_argument(
        "--cloud-stride",
        type=_positive_int,
        default=1,
        help="point clouds: every N-th pixel in both directions [1]",
    )
    out.add_argument(
        "--cloud-voxel",
        type=_positive,
        help="point clouds: one point per cube of this side in metres (mean position and "
        "colour, majority class) [off]",
    )
    out.add_argument(
        "--overwrite", action="store_true", help="redo every panorama (default: skip finished ones)"
    )
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    out.add_argument(
        "--verbose", action="store_true", help="also the instance path's progress per panorama"
    )
    parser.set_defaults(func=run)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text}")
    return value


def _save_kinds(text: str) -> tuple[str, ...]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if kinds == ["all"]:
        return SAVE_CHOICES
    unknown = [k for k in kinds if k not in SAVE_CHOICES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown output {unknown}; choose from {', '.join(SAVE_CHOICES)} or 'all'"
        )
    if "viewer" in kinds and "labels" not in kinds:
        raise argparse.ArgumentTypeError("the viewer shows labels.png: add 'labels' to --save")
    return tuple(dict.fromkeys(kinds))


def run(args: argparse.Namespace) -> int:
    from ..inference.capture import ModelChoice, segment_capture
    from ..inference.run import NO_DEPTH_NOTE, RunSettings

    save = args.save if isinstance(args.save, tuple) else _save_kinds(args.save)
    instances = not args.no_instances
    settings = RunSettings(
        save=save if instances else tuple(k for k in save if k != "instances"),
        instances=instances,
        refine=not args.no_refine,
        amg=_amg_changes(args) if instances else {},
        normals_from_depth=args.normals_from_depth,
        precision=args.precision,
        cloud_stride=args.cloud_stride,
        cloud_voxel=args.cloud_voxel,
    )
    choice = ModelChoice(
        checkpoint=args.checkpoint,
        variant=args.variant,
        config=args.config,
        vit_model=args.vit_model,
        sam_weights_path=args.sam_weights_path,
        revision=args.revision,
        device=args.device,
    )
    report = segment_capture(
        args.inputs,
        args.out,
        choice,
        settings,
        recursive=args.recursive,
        depth=None if args.demo else args.depth,
        normals=None if args.demo else args.normals,
        depth_scale=args.depth_scale,
        depth_max=args.depth_max,
        depth_invalid=args.depth_invalid,
        dataset=args.dataset,
        class_names=args.class_names or args.dataset,
        demo=args.demo,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.quiet,
        verbose=args.verbose,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 1 if report.failures else 0  # process 0 reports for the run
    hours = report.seconds / 3600
    rate = f", {report.segmented / hours:.0f} panoramas per hour" if report.segmented else ""
    print(
        f"segmented {report.segmented}, skipped {report.skipped} (done before), failed "
        f"{len(report.failures)} in {report.seconds:.0f} s{rate} -> {args.out}"
    )
    no_depth = [r["name"] for r in report.records if NO_DEPTH_NOTE in (r.get("notes") or [])]
    if no_depth:
        named = ", ".join(no_depth[:5]) + (", ..." if len(no_depth) > 5 else "")
        print(f"no point cloud for {len(no_depth)} panoramas without depth: {named}")
    for failure in report.failures:
        print(f"failed: {failure['path']}: {failure['reason']}", file=sys.stderr)
    return 1 if report.failures else 0


def _amg_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The instance-path settings given on the command line (the rest keep their defaults)."""
    changes = {
        "points_per_side": args.points_per_side,
        "point_grid": args.point_grid,
        "modalities": args.instance_modalities,
        "decoder": "exact" if args.exact_decoder else None,
    }
    return {key: value for key, value in changes.items() if value is not None}
