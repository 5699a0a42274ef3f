"""GPU speed and memory: ViT-B and ViT-H RGB-D-N in fp32, bf16 and bf16 with torch.compile.

Every configuration is a real-size PanoSAMic with random weights (nothing is
downloaded), dual view, semantic path, on batches of random 512 x 1024
panoramas. For each model x precision x batch size it prints the median time
per panorama (ms) and the peak CUDA memory of the timed forwards (allocated
by tensors, and reserved by PyTorch's caching allocator), as a table and as
JSON, so that one run on a GPU gives every figure of the performance page.

``bf16+compile`` runs the encoder blocks and the fusion blocks through
``torch.compile`` (the first forwards compile; they are the warm-up). A
configuration that runs out of memory, or fails otherwise, is reported as
such and the run goes on.

``--dry-run`` is a smoke test of this script on the CPU: the tiny encoder, a
64 x 128 panorama, ``torch.compile`` with the ``eager`` backend (no code
generation), all in a few seconds.

Usage::

    PYTHONPATH=. python benchmarks/bench_gpu.py --json gpu.json          # everything, on cuda
    PYTHONPATH=. python benchmarks/bench_gpu.py --models vit_h --batches 1
    PYTHONPATH=. python benchmarks/bench_gpu.py --dry-run                 # CPU smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from panosamic.benchmark import BenchConfig, environment, random_model
from panosamic.model import PanoSAMic

PRECISIONS = ("fp32", "bf16", "bf16+compile")


@dataclass
class Case:
    """One measured configuration and its result."""

    model: str
    precision: str
    batch: int
    ms_per_panorama: float | None = None
    runs_ms: list[float] = field(default_factory=list)
    peak_allocated_gb: float | None = None
    peak_reserved_gb: float | None = None
    error: str | None = None


def compile_model(model: PanoSAMic, backend: str = "inductor") -> None:
    """Run the encoder blocks and the fusion blocks through ``torch.compile`` (in place)."""
    for block in model.image_encoder.blocks:
        block.forward_ = torch.compile(block.forward_, backend=backend, dynamic=False)
    fuser = getattr(model, "feature_fuser", None)
    for block in [] if fuser is None else fuser.fusion_blocks:
        block.forward = torch.compile(block.forward, backend=backend, dynamic=False)


def random_batch(batch: int, height: int, device: torch.device, seed: int = 1) -> list[dict]:
    """``batch`` random RGB-D-N panoramas (3, height, 2 * height) in [0, 255] on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            m: (torch.rand(3, height, 2 * height, generator=generator) * 255).to(device)
            for m in ("image", "depth", "normals")
        }
        for _ in range(batch)
    ]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    case: Case, device: torch.device, repeats: int, warmup: int, height: int, dry_run: bool
) -> Case:
    """Time ``repeats`` forwards after ``warmup`` ones; fill in ``case``."""
    vit_model = "vit_b" if dry_run else case.model
    cfg = BenchConfig(vit_model=vit_model, device=str(device), height=height, tiny=dry_run)
    model = batch = None
    try:
        model = random_model(cfg)
        model.precision = case.precision.split("+")[0]
        if case.precision.endswith("+compile"):
            compile_model(model, backend="eager" if dry_run else "inductor")
        batch = random_batch(case.batch, height, device)
        with torch.inference_mode():
            for _ in range(warmup):
                model(batch, semantic_only=True)
            _synchronize(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(repeats):
                start = time.perf_counter()
                model(batch, semantic_only=True)
                _synchronize(device)
                case.runs_ms.append(1000 * (time.perf_counter() - start) / case.batch)
        case.ms_per_panorama = statistics.median(case.runs_ms)
        if device.type == "cuda":
            case.peak_allocated_gb = torch.cuda.max_memory_allocated(device) / 1e9
            case.peak_reserved_gb = torch.cuda.max_memory_reserved(device) / 1e9
    except torch.cuda.OutOfMemoryError as err:
        case.error = f"out of memory: {str(err).splitlines()[0]}"
    except Exception as err:  # one failing case (a compile error, ...) must not end the run
        if dry_run:
            raise
        case.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    finally:
        del model, batch
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return case


def format_table(cases: list[Case]) -> str:
    lines = [
        f"{'model':8s}{'precision':15s}{'batch':>6s}{'ms / panorama':>15s}"
        f"{'peak alloc GB':>15s}{'peak reserved GB':>18s}"
    ]
    for c in cases:

        def gb(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        timing = f"{c.ms_per_panorama:.1f}" if c.ms_per_panorama is not None else c.error or "-"
        lines.append(
            f"{c.model:8s}{c.precision:15s}{c.batch:6d}{timing:>15s}"
            f"{gb(c.peak_allocated_gb):>15s}{gb(c.peak_reserved_gb):>18s}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cpu" if args.dry_run else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or use --dry-run")
    models = ["tiny"] if args.dry_run else args.models.split(",")
    cases = [
        Case(model=m, precision=p, batch=b)
        for m in models
        for p in args.precisions.split(",")
        for b in (int(v) for v in args.batches.split(","))
    ]
    unknown = {c.precision for c in cases} - set(PRECISIONS)
    if unknown:
        raise SystemExit(f"unknown precisions {sorted(unknown)}; known: {list(PRECISIONS)}")
    height = 64 if args.dry_run else args.height
    repeats, warmup = (1, 1) if args.dry_run else (args.repeats, args.warmup)
    for case in cases:
        measure(case, device, repeats, warmup, height, args.dry_run)
        print(f"  {case.model} {case.precision} batch {case.batch}: "
              f"{case.error or f'{case.ms_per_panorama:.1f} ms'}", flush=True)  # fmt: skip
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "dry_run": args.dry_run,
        "height": height,
        "repeats": repeats,
        "warmup": warmup,
        "environment": environment() | {"cuda": torch.version.cuda},
        "cases": [asdict(c) for c in cases],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="vit_b,vit_h", help="comma-separated ViT sizes")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards (compile here)")
    parser.add_argument("--height", type=int, default=512, help="panorama height (width twice)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="CPU smoke test, tiny encoder")
    parser.add_argument("--json", type=Path, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    result = run(args)
    cases = [Case(**c) for c in result["cases"]]
    print(format_table(cases))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
