"""Throughput of ``panosamic segment`` over a capture, against the model's pure forward time.

Renders ``--count`` synthetic 512 x 1024 rooms (RGB, 16-bit depth in mm, normals)
and, for each model size asked for, measures in one run on this machine:

- the pure forward time per panorama (``panosamic bench``'s measurement:
  random weights of the same architecture, warm-up, median);
- one ``panosamic segment`` run over all panoramas (model loaded once, reading in
  worker processes, writing in a thread): seconds per panorama, panoramas per
  hour, and what reading, decoding and writing add on top of the forward;
- for the tiny model also one ``panosamic segment`` process per file (start-up and
  loading every time), the way the reference and its peers work.

Models: ``tiny`` is the golden fixtures' tiny encoder (RGB-D-N, dual view),
``vitb`` a real-size ViT-B RGB-D-N with random weights. The semantic path only
(``--no-instances``), fp32.

Usage::

    PYTHONPATH=. python benchmarks/bench_segment.py                       # tiny and vitb, 20 panoramas
    PYTHONPATH=. python benchmarks/bench_segment.py --models tiny --count 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PAIRING = ["--depth", "{dir}/../depth/{stem}.png", "--normals", "{dir}/../normal/{stem}.png"]


def write_capture(folder: Path, count: int, height: int = 512) -> Path:
    """``count`` rooms as rgb/, depth/ (mm) and normal/ files; returns the rgb folder."""
    from panosamic.data.files import save_png16
    from panosamic.data.normals import encode_normals, normals_from_depth
    from panosamic.data.synth import render_room

    for sub in ("rgb", "depth", "normal"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        room = render_room(100 + i, height, 2 * height, dataset="stanford2d3ds")
        Image.fromarray(room.rgb).save(folder / "rgb" / f"pano{i:03d}.png")
        depth = (room.depth * 1000).round().clip(0, 65535).astype(np.uint16)
        save_png16(depth, folder / "depth" / f"pano{i:03d}.png")
        vectors, good = normals_from_depth(room.depth.astype(np.float64), room.valid)
        Image.fromarray(encode_normals(vectors, good)).save(folder / "normal" / f"pano{i:03d}.png")
    return folder / "rgb"


def model_arguments(name: str, folder: Path) -> list[str]:
    """Checkpoint files of the model ``name`` in ``folder`` and the flags that load them."""
    if name == "tiny":
        from tests.conftest import write_hub_layout

        hub, sam, config = write_hub_layout(folder, "tiny-dual")
        return ["--checkpoint", str(hub), "--variant", "tiny-dual", "--config", str(config),
                "--sam-weights-path", str(sam)]  # fmt: skip
    from tests.realsize import VARIANT, write_vitb_files

    sam, hub = write_vitb_files(folder)
    return ["--checkpoint", str(hub), "--variant", VARIANT, "--sam-weights-path", str(sam.parent)]


def forward_seconds(name: str, repeats: int) -> float:
    """``panosamic bench``'s median forward time of the same architecture (semantic path)."""
    from panosamic.benchmark import BenchConfig, run_benchmark

    cfg = BenchConfig(vit_model="vit_b", tiny=name == "tiny", repeats=repeats, warmup=1)
    return run_benchmark(cfg, progress=False).median_seconds


def segment_run(
    rgb: Path, model: list[str], out: Path, workers: int, save: str | None = None
) -> dict[str, Any]:
    """One ``panosamic segment`` process over the whole capture (``save``: its ``--save``)."""
    command = [sys.executable, "-m", "panosamic.cli", "segment", str(rgb), *PAIRING, *model,
               "--depth-scale", "1000", "--depth-max", "10", "--no-instances", "--quiet",
               "--workers", str(workers), "--out", str(out)]  # fmt: skip
    if save is not None:
        command += ["--save", save]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=_env(), check=True, capture_output=True)
    seconds = time.perf_counter() - start
    summary = json.loads((out / "run_summary.json").read_text())
    per = [p["seconds"] for p in summary["panoramas"]]
    return {
        "wall_seconds": round(seconds, 2),
        "segmented": summary["totals"]["segmented"],
        "forward_seconds_in_run": round(statistics.median(per), 4),
    }


def per_file_runs(rgb: Path, model: list[str], out: Path) -> float:
    """One ``panosamic segment`` process per panorama (start-up and loading each time)."""
    start = time.perf_counter()
    for image in sorted(rgb.glob("*.png")):
        command = [sys.executable, "-m", "panosamic.cli", "segment", str(image), *PAIRING, *model,
                   "--depth-scale", "1000", "--depth-max", "10", "--no-instances", "--quiet",
                   "--workers", "0", "--out", str(out)]  # fmt: skip
        subprocess.run(command, cwd=ROOT, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,vitb", help="comma-separated: tiny, vitb")
    parser.add_argument("--count", type=int, default=20, help="panoramas in the capture [20]")
    parser.add_argument("--workers", type=int, default=1, help="segment's reading processes [1]")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed forwards for the bench figure [3]"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    from panosamic.benchmark import cpu_name

    results: dict[str, Any] = {
        "count": args.count,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        rgb = write_capture(Path(tmp) / "capture", args.count)
        for name in args.models.split(","):
            folder = Path(tmp) / name
            model = model_arguments(name, folder)
            forward = forward_seconds(name, args.repeats)
            run = segment_run(rgb, model, folder / "out", args.workers)
            per_panorama = run["wall_seconds"] / args.count
            entry = {
                "bench_forward_seconds": round(forward, 4),
                **run,
                "seconds_per_panorama": round(per_panorama, 4),
                "panoramas_per_hour": round(3600 / per_panorama, 1),
                "added_over_forward": round(per_panorama / forward - 1, 4),
            }
            if name == "tiny":
                separate = per_file_runs(rgb, model, folder / "per_file")
                entry["one_process_per_file_seconds"] = round(separate, 2)
                entry["speedup_over_one_process_per_file"] = round(
                    separate / run["wall_seconds"], 2
                )
            results["models"][name] = entry
            print(f"{name}: {json.dumps(entry)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
