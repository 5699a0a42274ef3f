"""What ``--save pointcloud`` and ``--save viewer`` add per panorama, against a ViT-B forward.

In one run on this machine: ``panosamic bench``'s semantic-only ViT-B forward
(random weights, 512 x 1024, fp32) and, for a synthetic room at each size asked
for, the work the two outputs add to a panorama:

- pointcloud: the confidence (softmax maximum of the logits), the labelled cloud
  of every pixel with depth and its binary PLY;
- viewer: the panorama's data script (picture as JPEG, classes and instances
  as PNG, a thinned copy of the cloud), made from memory as ``segment`` makes it.

The input size matters: segment writes clouds at the input's resolution (a
Stanford2D3DS panorama is 2048 x 4096, eight million points before ``--cloud-stride``).

``--runs N`` also times two ``panosamic segment`` runs over N synthetic
panoramas of the largest size (ViT-B, random weights, semantic path), one
saving ``labels`` and one ``labels,pointcloud,viewer``: in a run the clouds are
written in the writer thread while the next panorama goes through the model,
so what they add to the wall time can be less than the steps' own time.

Usage::

    PYTHONPATH=. python benchmarks/bench_clouds.py                     # 512x1024 and 2048x4096
    PYTHONPATH=. python benchmarks/bench_clouds.py --sizes 1024 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.bench_segment import forward_seconds, model_arguments, segment_run, write_capture
from panosamic.benchmark import cpu_name


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def added_seconds(height: int, folder: Path, repeats: int) -> dict[str, Any]:
    from panosamic.clouds.ply import write_ply
    from panosamic.clouds.points import cloud_from_panorama
    from panosamic.data.synth import expected_semantics, render_room
    from panosamic.inference.run import top_probability
    from panosamic.viewer.page import ViewerOptions, data_script

    room = render_room(3, height, 2 * height, dataset="stanford2d3ds")
    labels = np.maximum(expected_semantics("stanford2d3ds", room), 0)
    logits = torch.randn(13, height, 2 * height)
    folder.mkdir(parents=True, exist_ok=True)

    def cloud():
        confidence = top_probability(logits).numpy()
        points = cloud_from_panorama(
            room.depth, room.valid, room.rgb, labels, confidence=confidence
        )
        write_ply(folder / "pointcloud.ply", points, atomic=False)  # as segment writes it
        return points

    points = cloud()
    viewer = timed(
        lambda: data_script("bench", room.rgb, labels, [], points, ViewerOptions()), repeats
    )
    return {
        "size": f"{height}x{2 * height}",
        "points": len(points),
        "ply_megabytes": round((folder / "pointcloud.ply").stat().st_size / 1e6, 1),
        "pointcloud_seconds": round(timed(cloud, repeats), 3),
        "viewer_seconds": round(viewer, 3),
    }


def segment_runs(folder: Path, count: int, height: int, forward: float) -> dict[str, Any]:
    """Wall time per panorama of segment runs without and with clouds and the viewer."""
    rgb = write_capture(folder / "capture", count, height)
    model = model_arguments("vitb", folder / "model")
    plain_run = segment_run(rgb, model, folder / "plain", 0, "labels")
    full_run = segment_run(rgb, model, folder / "full", 0, "labels,pointcloud,viewer")
    plain, full = plain_run["wall_seconds"], full_run["wall_seconds"]
    added = (full - plain) / count
    return {
        "size": f"{height}x{2 * height}",
        "panoramas": count,
        "labels_seconds": plain,
        "labels_pointcloud_viewer_seconds": full,
        # the forward's median inside each run: what the writer thread costs the model
        "forward_in_labels_run_seconds": plain_run["forward_seconds_in_run"],
        "forward_in_full_run_seconds": full_run["forward_seconds_in_run"],
        "added_per_panorama_seconds": round(added, 3),
        "added_share_of_forward": round(added / forward, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="512,2048", help="panorama heights [512,2048]")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step [3]")
    parser.add_argument("--forward-repeats", type=int, default=2, help="timed ViT-B forwards [2]")
    parser.add_argument("--runs", type=int, default=0, help="also time segment runs of N panoramas")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    forward = forward_seconds("vitb", args.forward_repeats)
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "vitb_semantic_forward_seconds": round(forward, 2),
        "sizes": [],
    }
    print(f"ViT-B semantic forward: {forward:.2f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for height in (int(h) for h in args.sizes.split(",")):
            entry = added_seconds(height, Path(tmp) / str(height), args.repeats)
            for kind in ("pointcloud", "viewer"):
                entry[f"{kind}_share_of_forward"] = round(entry[f"{kind}_seconds"] / forward, 4)
            results["sizes"].append(entry)
            print(json.dumps(entry), flush=True)
        if args.runs:
            results["segment_runs"] = segment_runs(Path(tmp), args.runs, height, forward)
            print(json.dumps(results["segment_runs"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
