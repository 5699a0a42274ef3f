"""``panosamic bench``: speed and memory of a real-size model with random weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time a real-size model (random weights) on one 512 x 1024 panorama",
        description=(
            "Build a real-size PanoSAMic with random weights (nothing is downloaded), run warm-up "
            "and timed forwards on a random panorama, and print the median time, a per-stage "
            "breakdown and the peak memory as a table (and JSON with --json)."
        ),
    )
    options.add(parser, "vit_model", default="vit_b", more="[vit_b]")
    options.add(parser, "modalities", default="image,depth,normals", more="[image,depth,normals]")
    parser.add_argument("--single-view", action="store_true")
    parser.add_argument("--channel-attention", choices=("eca", "fc"), default="eca")
    parser.add_argument("--instances", action="store_true", help="include SAM instance masks")
    options.add(
        parser,
        "precision",
        default="fp32",
        more="[fp32]; int8 (CPU only): the encoder's attention projections as int8 products",
    )
    parser.add_argument(
        "--compare-fp32", action="store_true", help="report argmax agreement with fp32"
    )
    options.add(parser, "device", default="cpu", more="[cpu]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--height", type=int, default=512, help="panorama height (width is twice)")
    parser.add_argument(
        "--train-step", action="store_true", help="measure one training step instead"
    )
    parser.add_argument(
        "--checkpointing", action="store_true", help="activation checkpointing (train step)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny encoder (smoke test of the tool)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..benchmark import BenchConfig, format_table, run_benchmark, run_train_step
    from ..modalities import normalize_modalities
    from ..utils.atomic import write_json

    if args.repeats < 1 or args.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0")
    cfg = BenchConfig(
        vit_model=args.vit_model,
        modalities=normalize_modalities(args.modalities),
        dual_view=not args.single_view,
        channel_attention=args.channel_attention,
        instances=args.instances,
        precision=args.precision,
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
        height=args.height,
        tiny=args.tiny,
    )
    if args.train_step:
        result = run_train_step(cfg, checkpointing=args.checkpointing)
    else:
        result = run_benchmark(cfg, compare_fp32=args.compare_fp32)
    print(format_table(result))
    if args.json:
        write_json(args.json, asdict(result))
        print(json.dumps({"written": str(args.json)}))
    return 0
