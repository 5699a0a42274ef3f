"""Tiny models for the instance-path tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from panosamic.model import PanoSAMic
from panosamic.model.config import model_config_from_dict
from tests.conftest import golden_model_json, write_hub_layout


def golden_instance_model(tmp_path: Path, **kwargs: Any) -> PanoSAMic:
    """The tiny-instances fixture, loaded the way users load checkpoints."""
    hub, sam, config = write_hub_layout(tmp_path, "tiny-instances")
    return PanoSAMic.from_pretrained_panosamic(
        str(hub),
        subfolder="tiny-instances",
        config_path=str(config),
        sam_weights_path=str(sam),
        **kwargs,
    )


def random_instance_model(
    seed: int = 0, sharpness: float = 10.0, dual_view: bool = True, **amg: Any
) -> PanoSAMic:
    """The fixture's tiny architecture with random weights and a confident mask decoder.

    The upscaling and hypernetwork weights are multiplied by ``sharpness`` so
    that many candidate masks pass the stability filter.
    """
    torch.manual_seed(seed)
    data = golden_model_json("tiny-instances") | {"dual_view_fusion": dual_view}
    config = model_config_from_dict(data, vit_model=None)
    config = replace(config, amg=replace(config.amg, **amg))
    model = PanoSAMic(config).eval()
    with torch.no_grad():
        for name, p in model.mask_decoder.named_parameters():
            if name.startswith(("output_upscaling", "output_hypernetworks_mlps")):
                p.mul_(sharpness)
    return model


def random_panorama(
    model: PanoSAMic, height: int = 64, seed: int = 1
) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            m: torch.rand(3, height, 2 * height, generator=generator) * 255
            for m in model.config.modalities
        }
    ]


def neck_of(model: PanoSAMic, batch: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_features(batch, keep_neck=True, keep_all=False)["encoder_neck"]


def same_masks(a: list[dict[str, Any]], b: list[dict[str, Any]], score_tol: float = 0.0) -> bool:
    """Equal mask lists in the same order: segmentation and area equal, both scores
    within ``score_tol`` (0: equal)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if not torch.equal(x["segmentation"], y["segmentation"]) or x["area"] != y["area"]:
            return False
        for key in ("predicted_iou", "stability_score"):
            if abs(x[key] - y[key]) > score_tol:
                return False
    return True
