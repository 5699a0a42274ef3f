"""Benchmarks of the data tools (not tests): renderer speed, normals-from-depth accuracy, loading.

Run: ``PYTHONPATH=. python benchmarks/bench_data.py [--rooms 5]``
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def bench_render(rooms: int) -> None:
    from panosamic.data.render import generate_room, render

    times = []
    for seed in range(rooms):
        room = generate_room(seed)
        start = time.perf_counter()
        render(room, 512, 1024)
        times.append(time.perf_counter() - start)
    print(
        f"render 512 x 1024: median {np.median(times):.2f} s over {rooms} rooms (min {min(times):.2f} s)"
    )


def bench_normals(rooms: int) -> None:
    from panosamic.data.normals import angular_error_deg, normals_from_depth
    from panosamic.data.render import generate_room, render

    encodings = {
        "exact float depth": None,
        "Stanford2D3DS 16-bit, 1/512 m": 512.0,
        "Matterport3D 16-bit, 1/4000 m": 4000.0,
        "Structured3D 16-bit, 1/1000 m": 1000.0,
    }
    errors: dict[str, list[np.ndarray]] = {k: [] for k in encodings}
    seconds = []
    for seed in range(rooms):
        r = render(generate_room(seed, holes=0.004), 512, 1024)
        for label, per_metre in encodings.items():
            depth = r.depth if per_metre is None else np.rint(r.depth * per_metre) / per_metre
            start = time.perf_counter()
            normals, ok = normals_from_depth(depth, r.valid)
            seconds.append(time.perf_counter() - start)
            errors[label].append(angular_error_deg(normals[ok], r.normals[ok]))
    print(f"normals from depth, 512 x 1024, {rooms} rooms, {np.median(seconds):.2f} s each:")
    for label, errs in errors.items():
        e = np.concatenate(errs)
        print(
            f"  {label:32s} median {np.median(e):5.2f} deg, mean {e.mean():5.2f}, <5 deg {np.mean(e < 5):.1%}"
        )


def bench_loading() -> None:
    import torch

    from panosamic.data import build_dataset
    from panosamic.data.synth import make_prepared_dataset

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = make_prepared_dataset(
            "stanford2d3ds", tmp, count=4, height=512, width=1024, workers=None
        )
        print(
            f"synth + prepare 4 Stanford panoramas at 512 x 1024: {time.perf_counter() - start:.1f} s"
        )
        ds = build_dataset("stanford2d3ds", root, split="train", seed=0)
        start = time.perf_counter()
        for i in range(len(ds)):
            data, _ = ds[i]
            assert data["image"].dtype == torch.float32
        print(f"load one RGB-D-N item: {(time.perf_counter() - start) / len(ds) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", type=int, default=5)
    args = parser.parse_args()
    bench_render(args.rooms)
    bench_normals(args.rooms)
    bench_loading()


if __name__ == "__main__":
    main()
