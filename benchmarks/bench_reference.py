"""Side by side with the reference implementation: one machine, one run, the same weights and input.

Given a checkout of the reference implementation (the public ``dfki-av/PanoSAMic``
repository; this script never downloads it and nothing here depends on it),
this script

1. writes one set of random real-size weights (the model of ``panosamic bench``:
   ViT-B RGB-D-N dual view, ECA channel attention, 13 classes, by default) and
   one random 512 x 1024 RGB-D-N panorama to a temporary folder;
2. runs each program in its own Python process, one after the other, so that
   each one's peak resident memory is its own: the reference (float32, its
   own model builder, the weights loaded strictly) and PanoSAMic in each
   requested precision; each process times ``--warmup`` untimed and
   ``--repeats`` timed forwards of the semantic path under
   ``torch.inference_mode`` and writes its argmax labels;
3. prints, per program, the median forward time, the peak RSS of the whole
   process and of the forwards alone, the speed-up and memory share against
   the reference, and the argmax agreement with the reference and with
   PanoSAMic's float32, as a table and JSON.

How busy the machine was is recorded too: the cores other processes used
during each program's timed forwards (and the load averages). More than a few
tenths of a core: another job ran meanwhile, and the figures should be taken
again.

Usage::

    PYTHONPATH=. python benchmarks/bench_reference.py --reference ~/src/PanoSAMic
    PYTHONPATH=. python benchmarks/bench_reference.py --reference ~/src/PanoSAMic \\
        --precisions fp32,bf16,int8 --repeats 3 --json side_by_side.json

The reference checkout needs its ``panosamic/model`` package,
``panosamic/evaluation/utils/config.py`` and the packages they import
(``segment-anything``, ``torchvision``); both programs run with the same
torch and the same number of threads.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_FILES = ("panosamic/model/model_builder.py", "panosamic/evaluation/utils/config.py")


# ----------------------------------------------------------------------------- measuring
def _status_kb(field: str) -> int | None:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of resident memory (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _cpu_counters() -> tuple[float, float] | None:
    """(busy seconds of all CPUs, this process's CPU seconds), like
    ``panosamic.benchmark.cpu_counters`` (the reference's process cannot import ours)."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = (sum(ticks) - sum(ticks[3:5]) - sum(ticks[8:10])) / os.sysconf("SC_CLK_TCK")
    return busy, sum(os.times()[:2])


def time_forwards(forward, warmup: int, repeats: int) -> dict[str, Any]:
    """Warm-up and timed calls of ``forward()``: seconds, peak RSS (GB), how busy the machine
    was (cores other processes used meanwhile, load averages)."""
    load_before = os.getloadavg()
    for _ in range(warmup):
        forward()
    gc.collect()
    reset = _reset_peak_rss()
    seconds = []
    before = _cpu_counters()
    for _ in range(repeats):
        start = time.perf_counter()
        forward()
        seconds.append(time.perf_counter() - start)
    after = _cpu_counters()
    others = None
    if before and after:
        others = max(0.0, (after[0] - before[0] - (after[1] - before[1])) / sum(seconds))
    forward_peak = _status_kb("VmHWM") if reset else None
    return {
        "other_load_cores": others,
        "seconds": seconds,
        "median_seconds": statistics.median(seconds),
        # ru_maxrss is not reset by clear_refs: the whole process's peak
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "forward_peak_rss_gb": None if forward_peak is None else forward_peak / 1e6,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "threads": torch.get_num_threads(),
    }


def _inputs(workdir: Path) -> list[dict[str, torch.Tensor]]:
    return torch.load(workdir / "input.pt")


def _save_labels(workdir: Path, name: str, logits: torch.Tensor) -> None:
    """(K, H, W) logits -> argmax labels as uint8 in ``<name>.npy``."""
    np.save(workdir / f"{name}.npy", logits.argmax(0).to(torch.uint8).numpy())


# ------------------------------------------------------------------- the reference's process
def run_reference_child(workdir: Path, warmup: int, repeats: int) -> dict[str, Any]:
    """Build the reference model with its own builder, load the weights strictly, time it."""
    from safetensors.torch import load_file

    # the reference's own package: in this process PYTHONPATH points at its checkout
    model_config = importlib.import_module("panosamic.evaluation.utils.config").ModelConfig
    builder = importlib.import_module("panosamic.model").panosamic_builder

    spec = json.loads((workdir / "spec.json").read_text())
    config = model_config(
        vit_model=spec["vit_model"],
        modalities=tuple(spec["modalities"]),
        semantic_only=True,
        channel_attention=spec["fusion"]["channel_attention"],
        spatial_attention=spec["fusion"]["spatial_attention"],
        dual_view_fusion=spec["fusion"]["dual_view_fusion"],
    )
    model = builder(config, num_classes=spec["num_classes"])
    state = load_file(workdir / "weights.safetensors")
    model.load_state_dict(state, strict=True)
    del state
    model.eval()
    batch = _inputs(workdir)
    outputs: list = []

    def forward() -> None:
        with torch.inference_mode():
            outputs[:] = model(batch)

    result = time_forwards(forward, warmup, repeats)
    _save_labels(workdir, "reference", outputs[0]["sem_preds"][0])
    return result


# ------------------------------------------------------------------------ our process
def run_panosamic_child(workdir: Path, precision: str, warmup: int, repeats: int) -> dict[str, Any]:
    """Build PanoSAMic on the meta device, take the weights as they are, time it per stage."""
    from safetensors.torch import load_file

    from panosamic.model import PanoSAMic
    from panosamic.model.config import model_config_from_dict
    from panosamic.utils.profiling import StageTimer

    spec = json.loads((workdir / "spec.json").read_text())
    config = model_config_from_dict(
        spec["fusion"],
        vit_model=spec["vit_model"],
        modalities=tuple(spec["modalities"]),
        num_classes=spec["num_classes"],
    )
    with torch.device("meta"):
        model = PanoSAMic(config, semantic_only=True, precision=precision)
    model.load_state_dict(load_file(workdir / "weights.safetensors"), strict=True, assign=True)
    model.eval()
    batch = _inputs(workdir)
    outputs: list = []
    timer = StageTimer()

    def forward() -> None:
        with torch.inference_mode():
            outputs[:] = model(batch)

    for _ in range(warmup):  # not timed by the stage timer
        forward()
    model.stage_timer = timer
    result = time_forwards(forward, 0, repeats)
    result["stages"] = {name: statistics.median(v) for name, v in timer.seconds.items()}
    _save_labels(workdir, f"panosamic-{precision}", outputs[0]["sem_preds"])
    return result


# ------------------------------------------------------------------------ the parent
def write_inputs(workdir: Path, vit_model: str, height: int, seed: int) -> dict[str, Any]:
    """Random weights (safetensors), a random panorama and the model spec into ``workdir``."""
    from safetensors.torch import save_file

    from panosamic.benchmark import BenchConfig, random_model, random_panorama
    from panosamic.hub.catalog import PUBLISHED_FUSION
    from panosamic.model.config import with_channel_attention

    cfg = BenchConfig(vit_model=vit_model, height=height, seed=seed)
    model = random_model(cfg)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, workdir / "weights.safetensors")
    del model, state
    gc.collect()
    torch.save(random_panorama(cfg), workdir / "input.pt")
    fusion = with_channel_attention(PUBLISHED_FUSION, cfg.channel_attention)
    fusion["dual_view_fusion"] = cfg.dual_view
    spec = {
        "vit_model": cfg.vit_model,
        "modalities": list(cfg.modalities),
        "num_classes": cfg.num_classes,
        "height": cfg.height,
        "fusion": fusion,
    }
    (workdir / "spec.json").write_text(json.dumps(spec, indent=2))
    return spec


def run_child(args: argparse.Namespace, program: str, precision: str, workdir: Path) -> dict:
    """One program in a fresh process; its result dict."""
    env = dict(os.environ)
    if program == "reference":
        env["PYTHONPATH"] = str(args.reference)  # its `panosamic`, not ours
    else:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [
        sys.executable, str(Path(__file__).resolve()),
        "--child", program, "--precision", precision, "--workdir", str(workdir),
        "--warmup", str(args.warmup), "--repeats", str(args.repeats),
    ]  # fmt: skip
    if args.flush_denormal:
        command.append("--flush-denormal")
    done = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{program} {precision} failed:\n{done.stderr[-4000:]}")
    return json.loads((workdir / f"{program}-{precision}.json").read_text())


def agreement(workdir: Path, a: str, b: str) -> float | None:
    pa, pb = workdir / f"{a}.npy", workdir / f"{b}.npy"
    if not (pa.exists() and pb.exists()):
        return None
    return float((np.load(pa) == np.load(pb)).mean())


def compare(args: argparse.Namespace) -> dict[str, Any]:
    missing = [f for f in REFERENCE_FILES if not (args.reference / f).is_file()]
    if missing:
        raise SystemExit(
            f"{args.reference} is not a checkout of the reference implementation "
            f"(missing {', '.join(missing)})"
        )
    precisions = args.precisions.split(",")
    with tempfile.TemporaryDirectory(prefix="panosamic-side-by-side-") as tmp:
        workdir = Path(tmp)
        print("writing weights and input ...", flush=True)
        spec = write_inputs(workdir, args.vit_model, args.height, args.seed)
        runs: dict[str, dict[str, Any]] = {}
        for program, precision in [("reference", "fp32")] + [("panosamic", p) for p in precisions]:
            name = "reference" if program == "reference" else f"panosamic-{precision}"
            print(f"{name} ...", flush=True)
            runs[name] = run_child(args, program, precision, workdir) | {
                "program": program,
                "precision": precision,
            }
            print(f"  {runs[name]['median_seconds']:.2f} s", flush=True)
        ref = runs["reference"]
        for name, run in runs.items():
            run["speedup"] = ref["median_seconds"] / run["median_seconds"]
            run["memory_share"] = run["peak_rss_gb"] / ref["peak_rss_gb"]
            run["agreement_with_reference"] = agreement(workdir, name, "reference")
            run["agreement_with_panosamic_fp32"] = agreement(workdir, name, "panosamic-fp32")
    from panosamic.benchmark import cpu_name

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "spec": spec,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "flush_denormal": args.flush_denormal,
        "runs": runs,
    }


def format_table(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["spec"]
    lines = [
        f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads, "
        f"{result['date']}",
        f"{s['vit_model']} {'+'.join(s['modalities'])} dual view, semantic path, "
        f"{s['height']}x{2 * s['height']}, median of {result['repeats']} after "
        f"{result['warmup']} warm-up",
        f"{'program':22s}{'forward':>10s}{'speed-up':>10s}{'peak RSS':>10s}{'share':>8s}"
        f"{'fwd RSS':>9s}{'= ref':>9s}{'= fp32':>9s}{'others':>8s}",
    ]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}%"

    for name, r in result["runs"].items():
        fwd = "-" if r["forward_peak_rss_gb"] is None else f"{r['forward_peak_rss_gb']:.2f}"
        others = r.get("other_load_cores")
        load = "-" if others is None else f"{others:.2f}"
        lines.append(
            f"{name:22s}{r['median_seconds']:9.2f}s{r['speedup']:9.2f}x"
            f"{r['peak_rss_gb']:8.2f}GB{r['memory_share']:8.2f}{fwd:>9s}"
            f"{pct(r['agreement_with_reference']):>9s}{pct(r['agreement_with_panosamic_fp32']):>9s}"
            f"{load:>8s}"
        )
    lines.append(
        "peak RSS: whole process (GB); fwd RSS: during the timed forwards; = ref / = fp32: "
        "argmax agreement; others: cores other processes used during the timed forwards"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, help="a checkout of the reference implementation")
    parser.add_argument(
        "--precisions", default="fp32,bf16,int8", help="PanoSAMic's, comma-separated"
    )
    parser.add_argument("--vit-model", default="vit_b")
    parser.add_argument("--height", type=int, default=512, help="panorama height (width twice)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--flush-denormal", action="store_true", help="both programs flush denormals to zero"
    )
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    parser.add_argument("--child", choices=("reference", "panosamic"), help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.flush_denormal:
            torch.set_flush_denormal(True)
        if args.child == "reference":
            result = run_reference_child(args.workdir, args.warmup, args.repeats)
        else:
            result = run_panosamic_child(args.workdir, args.precision, args.warmup, args.repeats)
        (args.workdir / f"{args.child}-{args.precision}.json").write_text(json.dumps(result))
        return 0
    if args.reference is None:
        parser.error("--reference PATH (a checkout of the reference implementation) is needed")
    args.reference = args.reference.expanduser().resolve()
    result = compare(args)
    print(format_table(result))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
