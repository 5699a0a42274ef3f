"""Where int8 costs agreement: argmax agreement with float32 per selection of int8 layers.

Builds the real-size random-weight model of ``panosamic bench`` (ViT-B RGB-D-N
dual view by default), computes the float32 logits of one random panorama
once, and then, for each selection of the encoder's linear layers run as int8
products (everything else bfloat16, as ``precision="int8"``), the share of
pixels whose argmax equals float32's and the forward time:

- ``bf16``: no int8 layer (the floor the int8 path starts from);
- ``kind:<k>``: one layer kind (``qkv``, ``proj``, ``lin1``, ``lin2``) in every block;
- ``block:<i>``: every kind in block ``i`` only;
- ``default``: the selection ``precision="int8"`` uses
  (:data:`panosamic.model.config.DEFAULT_INT8_LAYERS`);
- ``all``: every kind in every block;
- ``--select KINDS[:DENSE]``: any other selection, for example
  ``qkv,proj`` or ``qkv,proj,lin1,lin2:0-5`` (blocks 0 to 5 kept dense).

Times are single forwards (after one warm-up per selection) and only
indicative; ``panosamic bench --precision int8`` measures speed.

Usage::

    PYTHONPATH=. python benchmarks/bench_int8_layers.py                   # kinds, default, all
    PYTHONPATH=. python benchmarks/bench_int8_layers.py --blocks --json int8_layers.json
    PYTHONPATH=. python benchmarks/bench_int8_layers.py --only --select qkv,proj --select all:0-5
    PYTHONPATH=. python benchmarks/bench_int8_layers.py --tiny --height 64  # smoke test
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from panosamic.benchmark import BenchConfig, environment, random_model, random_panorama
from panosamic.model.config import DEFAULT_INT8_LAYERS, INT8_LAYER_KINDS, Int8Layers


def parse_selection(spec: str) -> Int8Layers:
    """``KINDS[:DENSE]`` -> selection: KINDS comma-separated kinds or ``all``; DENSE block
    indices and ranges (``0-5,7``) kept dense."""
    kinds, _, dense = spec.partition(":")
    chosen = tuple(INT8_LAYER_KINDS) if kinds == "all" else tuple(kinds.split(","))
    blocks: list[int] = []
    for part in filter(None, dense.split(",")):
        first, _, last = part.partition("-")
        blocks.extend(range(int(first), int(last or first) + 1))
    return Int8Layers(kinds=chosen, dense_blocks=tuple(blocks))


def selections(depth: int, blocks: bool, extra: list[str], only: bool) -> dict[str, Any]:
    """Name -> selection of int8 layers (None: plain bf16)."""
    chosen: dict[str, Int8Layers | None] = {"bf16": None}
    if not only:
        chosen |= {f"kind:{kind}": Int8Layers(kinds=(kind,)) for kind in INT8_LAYER_KINDS}
    if blocks:
        for i in range(depth):
            others = tuple(j for j in range(depth) if j != i)
            chosen[f"block:{i}"] = Int8Layers(dense_blocks=others)
    chosen |= {spec: parse_selection(spec) for spec in extra}
    if not only:
        chosen["default"] = DEFAULT_INT8_LAYERS
        chosen["all"] = Int8Layers()
    return chosen


def measure(
    cfg: BenchConfig,
    blocks: bool = False,
    extra: list[str] = (),
    only: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Agreement with float32 (share of pixels) and seconds per selection."""
    model = random_model(cfg)
    batch = random_panorama(cfg)

    def forward(precision: str) -> tuple[torch.Tensor, float]:
        model.precision = precision
        start = time.perf_counter()
        with torch.inference_mode():
            logits = model(batch, semantic_only=True)[0]["sem_preds"]
        return logits.argmax(0), time.perf_counter() - start

    reference, seconds = forward("fp32")
    rows: dict[str, Any] = {"fp32": {"agreement": 1.0, "seconds": seconds}}
    chosen = selections(model.config.encoder.depth, blocks, list(extra), only)
    for name, selection in chosen.items():
        if selection is not None:
            model.image_encoder.int8_layers = selection
        precision = "bf16" if selection is None else "int8"
        forward(precision)  # warm-up: packs the int8 weights, primes the kernels
        labels, seconds = forward(precision)
        agreement = float((labels == reference).float().mean())
        rows[name] = {"agreement": agreement, "seconds": seconds}
        if progress:
            print(f"  {name:12s} {100 * agreement:7.2f} %  {seconds:6.1f} s", flush=True)
    return {"config": vars(cfg), "selections": rows, "environment": environment()}


def format_table(result: dict[str, Any]) -> str:
    width = max(14, *(len(name) + 2 for name in result["selections"]))
    lines = [f"{'selection':{width}s}agreement with fp32   forward"]
    for name, row in result["selections"].items():
        lines.append(f"{name:{width}s}{100 * row['agreement']:12.2f} %{row['seconds']:12.1f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vit-model", default="vit_b")
    parser.add_argument("--height", type=int, default=512, help="panorama height (width twice)")
    parser.add_argument("--blocks", action="store_true", help="also one block at a time")
    parser.add_argument(
        "--select", action="append", default=[], help="KINDS[:DENSE], e.g. qkv,proj or all:0-5"
    )
    parser.add_argument("--only", action="store_true", help="only bf16 and the --select selections")
    parser.add_argument("--tiny", action="store_true", help="the tiny encoder (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    args = parser.parse_args()
    cfg = BenchConfig(vit_model=args.vit_model, height=args.height, tiny=args.tiny)
    result = measure(cfg, blocks=args.blocks, extra=args.select, only=args.only)
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
