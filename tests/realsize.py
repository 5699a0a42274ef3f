"""Real-size ViT-B files with random weights, laid out exactly like the published ones."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from panosamic.model import PanoSAMic
from panosamic.model.config import model_config_from_dict
from panosamic.model.panosamic import FROZEN_PREFIXES
from panosamic.weights import PUBLISHED_FUSION, SAM_FILES

VARIANT = "stanford2d3ds-vitb-rgbdn-fold1"


def write_vitb_files(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """``root/sam_weights/sam_vit_b_01ec64.pth`` and ``root/dfki-av/PanoSAMic/<VARIANT>/model.safetensors``."""
    torch.manual_seed(seed)
    fusion = {
        **PUBLISHED_FUSION,
        "channel_attention": {**PUBLISHED_FUSION["channel_attention"], "efficient_attention": True},
    }
    config = model_config_from_dict(
        fusion, vit_model="vit_b", modalities=("image", "depth", "normals"), num_classes=13
    )
    model = PanoSAMic(config)
    with torch.no_grad():  # LayerNorm affines away from 1/0 so that they matter
        for name, p in model.named_parameters():
            if name.endswith(
                (
                    "norm.weight",
                    "neck.1.weight",
                    "neck.4.weight",
                    "neck.7.weight",
                    "decoder_head.1.weight",
                )
            ):
                p.uniform_(0.5, 1.5)
    state = model.state_dict()
    sam_dir = root / "sam_weights"
    sam_dir.mkdir(parents=True)
    sam_file = sam_dir / SAM_FILES["vit_b"]
    torch.save({k: v for k, v in state.items() if k.startswith(FROZEN_PREFIXES)}, sam_file)
    hub = root / "dfki-av" / "PanoSAMic"
    (hub / VARIANT).mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in model.trainable_state_dict().items()},
        hub / VARIANT / "model.safetensors",
    )
    return sam_file, hub
