"""The published checkpoint layouts (``data/checkpoint-layout/*.json``) and the configs they imply."""

from __future__ import annotations

import json
from pathlib import Path

from panosamic.hub.catalog import PUBLISHED_FUSION
from panosamic.model.config import PanoSAMicConfig, model_config_from_dict

LAYOUTS = Path(__file__).parent / "data" / "checkpoint-layout"
VARIANTS = sorted(p.stem for p in LAYOUTS.glob("*.json") if not p.stem.startswith("sam-"))


def read_layout(name: str) -> dict:
    """A layout file: tensor names and shapes, parameter counts, the architecture's facts."""
    return json.loads((LAYOUTS / f"{name}.json").read_text())


def layout_config(layout: dict) -> PanoSAMicConfig:
    """The model config of a published layout: the published fusion settings, its channel
    attention (ECA or fully connected), views, encoder, modalities and classes."""
    fusion = json.loads(json.dumps(PUBLISHED_FUSION))
    fusion["channel_attention"]["efficient_attention"] = layout["channel_attention"].startswith(
        "efficient"
    )
    fusion["dual_view_fusion"] = layout["dual_view_fusion"]
    return model_config_from_dict(
        fusion,
        vit_model=layout["vit_model"],
        modalities=layout["modalities"],
        num_classes=layout["num_classes"],
    )
