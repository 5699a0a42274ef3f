"""Which kernel for the encoder's linear layers: float32, bfloat16 and PyTorch's int8 options.

Times one linear layer of each of the encoder's shapes (ViT-B by default:
q/k/v 768 -> 2304, the output projection 768 -> 768, the MLP's 768 -> 3072 and
3072 -> 768) on a chunk of tokens, with one intra-op thread (as each of the
encoder's image workers runs) and with all of them, and prints the median
milliseconds and the rate in GFLOP/s (GOP/s for int8; a multiply-add counts
2) for:

- ``fp32``, ``bf16``: ``F.linear`` on float32 / bfloat16 tensors;
- ``int_mm``: ``torch._int_mm`` on int8 tensors, the product alone;
- ``int_mm+quant``: the same with per-token activation quantisation and
  the float output (dequantisation, bias) in eager PyTorch;
- ``qlinear``: oneDNN's int8 linear (``torch.ops.onednn.qlinear_pointwise``,
  what ``precision="int8"`` uses), uint8 activations quantised per call,
  bfloat16 output, quantisation included;
- ``dynamic``: PyTorch's dynamically quantised ``nn.Linear``
  (``torch.ao.quantization.quantize_dynamic``), float in and out.

Usage::

    PYTHONPATH=. python benchmarks/bench_linear_kernels.py
    PYTHONPATH=. python benchmarks/bench_linear_kernels.py --tokens 1024 --json kernels.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from panosamic.benchmark import environment
from panosamic.model.int8 import Int8Linear, int8_available

SHAPES = {"qkv": (768, 2304), "proj": (768, 768), "lin1": (768, 3072), "lin2": (3072, 768)}


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def kernels(tokens: int, k: int, n: int) -> dict[str, Callable[[], Any]]:
    """Name -> a call of that kernel on (tokens, k) inputs and an (n, k) weight."""
    x = torch.randn(tokens, k)
    linear = torch.nn.Linear(k, n)
    torch.nn.init.normal_(linear.weight, 0, 0.02)
    weight, bias = linear.weight.detach(), linear.bias.detach()
    xb, wb, bb = x.bfloat16(), weight.bfloat16(), bias.bfloat16()
    wq = torch.randint(-127, 128, (n, k), dtype=torch.int8).t()  # (k, n), column-major
    xq = torch.randint(-127, 128, (tokens, k), dtype=torch.int8)
    w_scale = weight.abs().amax(1) / 127

    def int_mm_quant() -> torch.Tensor:
        scale = x.abs().amax(1, keepdim=True) / 127
        q = torch.round(x / scale).to(torch.int8)
        return torch._int_mm(q, wq) * (scale * w_scale) + bias

    calls = {
        "fp32": lambda: F.linear(x, weight, bias),
        "bf16": lambda: F.linear(xb, wb, bb),
        "int_mm": lambda: torch._int_mm(xq, wq),
        "int_mm+quant": int_mm_quant,
    }
    if int8_available():
        int8 = Int8Linear(linear)
        calls["qlinear"] = lambda: int8(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dynamic = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8
        )
    calls["dynamic"] = lambda: dynamic(x)
    return calls


def measure(tokens: int, threads: list[int], repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    saved = torch.get_num_threads()
    try:
        for count in threads:
            torch.set_num_threads(count)
            for name, (k, n) in SHAPES.items():
                flops = 2 * tokens * k * n
                with torch.inference_mode():
                    for kernel, call in kernels(tokens, k, n).items():
                        ms = median_ms(call, repeats)
                        results[f"{count}/{name}/{kernel}"] = {
                            "threads": count, "layer": name, "kernel": kernel,
                            "ms": ms, "gflops": flops / ms / 1e6,
                        }  # fmt: skip
    finally:
        torch.set_num_threads(saved)
    return results


def format_table(results: dict[str, Any]) -> str:
    kernel_names = list(dict.fromkeys(r["kernel"] for r in results.values()))
    lines = [f"{'threads':>7s} {'layer':6s}" + "".join(f"{k:>18s}" for k in kernel_names)]
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for r in results.values():
        rows.setdefault((r["threads"], r["layer"]), {})[r["kernel"]] = r
    for (threads, layer), row in rows.items():
        cells = "".join(
            f"{row[k]['ms']:9.2f} ms{row[k]['gflops']:6.0f}" if k in row else f"{'-':>18s}"
            for k in kernel_names
        )
        lines.append(f"{threads:7d} {layer:6s}{cells}")
    lines.append("each cell: median milliseconds, then GFLOP/s (GOP/s for int8)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4096, help="tokens per call")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    args = parser.parse_args()
    threads = sorted({1, torch.get_num_threads()})
    results = measure(args.tokens, threads, args.repeats)
    print(format_table(results))
    if args.json:
        payload = {"tokens": args.tokens, "results": results, "environment": environment()}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
