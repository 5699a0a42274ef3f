"""``panosamic segment``: segment a panorama from files and write pictures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..hub.catalog import DEFAULT_REPO_ID
from ..instances.config import POINT_GRIDS
from . import options

DEFAULT_VARIANT = "stanford2d3ds-vitb-rgbdn-fold1"  # on the Hub, when --variant is not given


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a panorama (RGB, optional depth and normals) and write pictures",
        description=(
            "Segment an equirectangular panorama with a published or local checkpoint. Writes "
            "<name>.labels.png (class index per pixel), <name>.color.png, <name>.overlay.png, "
            "<name>.panel.png (input, result and legend), <name>.instances.png (with instance "
            "masks) and <name>.json (classes and their share of pixels)."
        ),
    )
    source = parser.add_argument_group("input")
    source.add_argument("image", nargs="?", type=Path, help="RGB panorama (any 2:1 size)")
    source.add_argument(
        "--demo", action="store_true", help="segment a synthetic room instead of a file"
    )
    source.add_argument("--depth", type=Path, help="depth map: 16-bit PNG or float .npy")
    source.add_argument(
        "--depth-scale",
        type=float,
        help="raw depth units per metre (Stanford 512, Matterport 4000, Structured3D 1000)",
    )
    source.add_argument(
        "--depth-max",
        type=float,
        help="d_t in metres: depth at or beyond it maps to 0 (the checkpoint's training value)",
    )
    source.add_argument(
        "--depth-invalid",
        type=float,
        default=0.0,
        help="raw value of pixels without depth (default 0; Stanford 65535)",
    )
    source.add_argument(
        "--normals", type=Path, help="normals image (RGB encoding, as in the dataset)"
    )
    source.add_argument(
        "--normals-from-depth", action="store_true", help="compute the normals image from --depth"
    )

    model = options.add_model_source(parser, checkpoint_default=DEFAULT_REPO_ID)
    options.add(model, "device", default="cpu", more="[cpu]")
    options.add(model, "precision", default="fp32", more="[fp32]")
    model.add_argument("--no-instances", action="store_true", help="semantic path only (faster)")

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
    inst.add_argument("--quiet", action="store_true", help="no progress bar")

    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("panosamic_out"), help="output directory")
    out.add_argument(
        "--class-names",
        default=None,
        help="dataset whose class names and count to use (default: from the variant)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.inputs import DepthEncoding, demo_panorama, read_panorama
    from ..inference.pictures import write_pictures
    from ..inference.segment import class_names_for, segment_panorama
    from ..model import PanoSAMic

    if args.demo == (args.image is not None):
        raise ValueError("give either an image path or --demo")
    if args.demo:
        panorama = demo_panorama(args.depth_max)
    else:
        encoding = None
        if args.depth_scale is not None and args.depth_max is not None:
            encoding = DepthEncoding(args.depth_scale, args.depth_max, args.depth_invalid)
        panorama = read_panorama(
            args.image,
            depth=args.depth,
            depth_encoding=encoding,
            normals=args.normals,
            normals_from_depth=args.normals_from_depth,
        )
    variant = args.variant or (DEFAULT_VARIANT if args.checkpoint == DEFAULT_REPO_ID else None)
    instances = not args.no_instances
    model = PanoSAMic.from_pretrained_panosamic(
        args.checkpoint,
        subfolder=variant,
        config_path=args.config,
        vit_model=args.vit_model,
        sam_weights_path=args.sam_weights_path,
        semantic_only=not instances,
        precision=args.precision,
        device=args.device,
        revision=args.revision,
    )
    if instances:
        model.set_amg(**_amg_changes(args))
    result = segment_panorama(
        model,
        panorama,
        instances=instances,
        refine=not args.no_refine,
        progress=instances and not args.quiet,
    )
    class_names = class_names_for(args.class_names, variant, model.config.num_classes)
    written = write_pictures(
        args.out,
        panorama.name,
        panorama.rgb,
        result.labels,
        result.masks,
        class_names,
        refined=result.refined,
    )
    for path in written:
        print(path)
    return 0


def _amg_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The instance-path settings given on the command line (the rest keep their defaults)."""
    changes = {
        "points_per_side": args.points_per_side,
        "point_grid": args.point_grid,
        "modalities": args.instance_modalities,
        "decoder": "exact" if args.exact_decoder else None,
    }
    return {key: value for key, value in changes.items() if value is not None}
