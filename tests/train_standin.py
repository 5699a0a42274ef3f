"""Helpers of the training/evaluation tests: a tiny config and an in-memory dataset.

``StandinPanoramas`` has the interface of ``panosamic.data.PanoramaDataset``
(``class_names``, ``num_classes``, ``palette``, ``sample_name``,
``class_weights``, ``depth_threshold``) over small synthetic panoramas whose
labels are learnable from colour and depth: ceiling band, floor band, wall,
and a box of a fourth class at a random position.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

TINY_ENCODER = {
    "img_size": 256,
    "patch_size": 16,
    "embed_dim": 64,
    "depth": 4,
    "num_heads": 4,
    "window_size": 6,
    "global_attn_indexes": [1, 3],
    "out_chans": 32,
}

CLASS_COLOURS = torch.tensor(
    [[220.0, 220.0, 200.0], [120.0, 80.0, 40.0], [90.0, 140.0, 200.0], [200.0, 40.0, 40.0]]
)
CLASS_DEPTH = torch.tensor([60.0, 200.0, 120.0, 250.0])


def tiny_config(loss: dict | None = None, dual_view: bool = True, max_lr: float = 5e-3) -> dict:
    """A config JSON dict with the golden fixtures' tiny encoder."""
    return {
        "encoder": TINY_ENCODER,
        "channel_attention": {
            "moving_attention": True,
            "window_size": 8,
            "stride": 4,
            "aggregation": "max",
            "efficient_attention": True,
        },
        "spatial_attention": {
            "moving_attention": True,
            "window_size": 8,
            "stride": 4,
            "aggregation": "none",
        },
        "loss": loss or {"JaccardLoss": 1},
        "optimizer": "Ranger21",
        "lr_scheduler": {
            "start_lr": 1e-5,
            "max_lr": max_lr,
            "warm_up_ratio": 0.1,
            "wind_down_ratio": 1,
        },
        "dual_view_fusion": dual_view,
    }


def write_config(path: Path, **kwargs) -> Path:
    path.write_text(json.dumps(tiny_config(**kwargs)))
    return path


def make_panorama(seed: int, height: int = 32) -> tuple[dict, dict]:
    """One synthetic sample (data dict, label dict) as the datasets return them."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    w = 2 * height
    labels = torch.full((height, w), 2, dtype=torch.int64)
    labels[: height // 4] = 0
    labels[-height // 4 :] = 1
    x0 = rng.randrange(0, w - w // 4)
    y0 = rng.randrange(height // 4, height // 2)
    labels[y0 : y0 + height // 4, x0 : x0 + w // 4] = 3
    image = CLASS_COLOURS[labels].permute(2, 0, 1) + 20 * torch.randn(3, height, w, generator=g)
    depth = CLASS_DEPTH[labels].expand(3, height, w) + 10 * torch.randn(1, height, w, generator=g)
    labels[0, : w // 8] = -1  # some ignored pixels
    data = {
        "image": image.clamp(0, 255),
        "depth": depth.clamp(0, 255),
        "normals": torch.empty(0),
    }
    return data, {"semantics": labels[None], "instances": torch.empty(0)}


class StandinPanoramas(torch.utils.data.Dataset):
    """In-memory stand-in for ``panosamic.data.PanoramaDataset``."""

    class_names = ("ceiling", "floor", "wall", "box")
    num_classes = 4
    palette = torch.tensor([[200, 200, 200], [120, 80, 40], [90, 140, 200], [200, 40, 40]]).byte()
    depth_threshold = 10.0

    def __init__(self, count: int, seed: int, augment: bool, height: int = 32) -> None:
        self.samples = [make_panorama(seed * 1000 + i, height) for i in range(count)]
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[dict, dict]:
        data, labels = self.samples[i]
        data = {k: v.clone() for k, v in data.items()}
        labels = {k: v.clone() for k, v in labels.items()}
        if self.augment and random.random() <= 0.25:  # a roll, drawn from the global RNG
            shift = int(random.random() * data["image"].shape[-1])
            data = {k: v.roll(shift, -1) if v.numel() else v for k, v in data.items()}
            labels["semantics"] = labels["semantics"].roll(shift, -1)
        return data, labels

    def sample_name(self, i: int) -> str:
        return f"area_x/sample_{i:03d}"

    def class_weights(self) -> torch.Tensor:
        counts = torch.zeros(self.num_classes)
        for _, lab in self.samples:
            sem = lab["semantics"]
            counts += torch.bincount(sem[sem >= 0], minlength=self.num_classes)
        return counts.sum() / counts


def standin_builder(train_count: int = 8, eval_count: int = 4, height: int = 128):
    """A ``build_dataset``-compatible factory over stand-in panoramas."""

    def build(name, root, *, fold=1, split="train", modalities=("image",), augment=None, **_):
        if split == "train":
            return StandinPanoramas(
                train_count, seed=fold, augment=augment is not False, height=height
            )
        return StandinPanoramas(eval_count, seed=100 + fold, augment=False, height=height)

    return build


def install_standin(train_count: int = 8, eval_count: int = 4) -> None:
    """Make ``panosamic.data`` serve stand-in datasets (for CLI runs in this process)."""
    import panosamic.data as data

    data.build_dataset = standin_builder(train_count, eval_count)
    data.DATASET_CLASS_NAMES = {"stanford2d3ds": StandinPanoramas.class_names}


if __name__ == "__main__":  # `python tests/train_standin.py train ...`: the CLI on stand-in data
    import os
    import sys

    from panosamic.cli import main

    install_standin(
        int(os.environ.get("STANDIN_TRAIN", "8")), int(os.environ.get("STANDIN_EVAL", "4"))
    )
    sys.exit(main(sys.argv[1:]))
