"""``panosamic info``: parameters and FLOPs per component of a variant, without its weights."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import options

CHANNEL_ATTENTION = ("config", "eca", "fc")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "info",
        help="parameters and FLOPs per component of a variant (no weights needed)",
        description=(
            "Total, trainable and frozen parameters and the FLOPs of one 512 x 1024 panorama "
            "for the encoder, the fusion, the decoder and the instance path, as the reference's "
            "efficiency report gives them (FLOPs also as multiply-adds, the paper's unit). "
            "VARIANT is a published variant (e.g. stanford2d3ds-vith-rgbdn-fold1); or describe "
            "a model with --config, --vit-model, --modalities and --dataset. The model is built "
            "on fake tensors: no weights and no memory for them; ViT-H takes about 10 s."
        ),
    )
    p.add_argument(
        "variant",
        nargs="?",
        metavar="VARIANT",
        help="a published variant, with or without -fold<k> (or give --config)",
    )
    model = p.add_argument_group("a model described by a config instead of VARIANT")
    options.add(model, "config")
    options.add(model, "vit_model", more="[vit_h; ignored when the config has an encoder]")
    options.add(model, "modalities", more="[image,depth,normals]")
    options.add(model, "dataset", more="(its class count) [13 classes]")
    p.add_argument(
        "--channel-attention",
        choices=CHANNEL_ATTENTION,
        help="ECA (what the published checkpoints hold) or the fully connected MLP; "
        "default: eca for VARIANT, the config's own choice for --config",
    )
    p.add_argument(
        "--no-instances",
        action="store_true",
        help="leave out the instance path (SAM's prompt encoder and mask decoder)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..data.catalog import dataset_info
    from ..efficiency import efficiency_report, format_report, json_config, published_config
    from ..modalities import MODALITIES, normalize_modalities
    from ..utils.atomic import write_json

    described = [
        flag
        for flag, value in (
            ("--vit-model", args.vit_model),
            ("--modalities", args.modalities),
            ("--dataset", args.dataset),
        )
        if value is not None
    ]
    if args.variant and (args.config or described):
        given = ", ".join(["--config"] * bool(args.config) + described)
        raise ValueError(f"VARIANT {args.variant} says what the model is; drop {given}")
    if args.variant:
        config, title = published_config(args.variant, args.channel_attention or "eca")
    elif args.config:
        config = json_config(
            args.config,
            vit_model=args.vit_model or "vit_h",
            modalities=normalize_modalities(args.modalities or MODALITIES),
            num_classes=dataset_info(args.dataset).num_classes if args.dataset else 13,
            channel_attention=args.channel_attention or "config",
        )
        title = args.config
    else:
        raise ValueError("name a VARIANT (e.g. stanford2d3ds-vith-rgbdn-fold1) or give --config")
    report = efficiency_report(config, title, instances=not args.no_instances)
    print(format_report(report))
    if args.json:
        write_json(args.json, report.to_dict())
        print(f"report written to {args.json}")
    return 0
