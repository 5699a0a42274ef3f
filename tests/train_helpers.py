"""Helpers of the training / evaluation tests: tiny configs and a synthetic prepared dataset."""

from __future__ import annotations

import json
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
# Stanford2D3DS synthetic panoramas: 14 samples cycle over the 7 areas, so fold 1
# trains on 10 (areas 1, 2, 3, 4, 6) and holds out 4 (areas 5a, 5b).
SYNTH_COUNT, SYNTH_HEIGHT = 14, 128


def tiny_config(loss: dict | None = None, dual_view: bool = True, max_lr: float = 5e-3) -> dict:
    """A config JSON dict with the golden fixtures' tiny encoder (as config_tiny_debug.json)."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tiny_config(**kwargs)))
    return path


def synthetic_stanford(root: Path) -> Path:
    """A prepared synthetic Stanford2D3DS (128 x 256 panoramas); returns its root."""
    from panosamic.data import make_prepared_dataset

    return make_prepared_dataset(
        "stanford2d3ds",
        root,
        count=SYNTH_COUNT,
        seed=0,
        height=SYNTH_HEIGHT,
        width=2 * SYNTH_HEIGHT,
    )


def write_tiny_sam_file(path: Path, modalities: str = "image,depth") -> Path:
    """A SAM-layout .pth (``image_encoder.*``) for the tiny encoder, randomly initialised."""
    from panosamic.model import PanoSAMic
    from panosamic.model.config import model_config_from_dict

    torch.manual_seed(123)
    model = PanoSAMic(
        model_config_from_dict(tiny_config(), modalities=modalities, num_classes=13),
        semantic_only=True,
    )
    frozen = {k: v for k, v in model.state_dict().items() if k.startswith("image_encoder.")}
    torch.save(frozen, path)
    return path
