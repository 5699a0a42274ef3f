"""The published checkpoints (``dfki-av/PanoSAMic``), their settings and the paper's scores.

One table, :data:`PUBLISHED`, holds every published variant with the scores of
the paper (arXiv 2601.07447, Tables 1, 2 and 5): the mean over the three
official folds for Stanford2D3DS (each fold's checkpoint on its held-out
areas), the 360BEV validation split for Matterport3D (which reports no mAcc).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.catalog import DATASET_INFO
from ..modalities import MODALITY_TAGS

DEFAULT_REPO_ID = "dfki-av/PanoSAMic"
VIT_MODELS: tuple[str, ...] = ("vit_b", "vit_l", "vit_h")  # SAM's encoder sizes


@dataclass(frozen=True)
class PublishedFamily:
    """Published variants that differ only in their fold, e.g. ``stanford2d3ds-vith-rgbdn-fold{1,2,3}``."""

    dataset: str
    vit_model: str
    modality_tag: str  # rgb, rgbd, rgbdn
    folds: tuple[int, ...]  # () for a single checkpoint
    paper_miou: float
    paper_macc: float | None

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.vit_model.replace('_', '')}-{self.modality_tag}"

    @property
    def modalities(self) -> tuple[str, ...]:
        return MODALITY_TAGS[self.modality_tag]

    @property
    def variants(self) -> tuple[str, ...]:
        if not self.folds:
            return (self.name,)
        return tuple(f"{self.name}-fold{f}" for f in self.folds)


PUBLISHED: tuple[PublishedFamily, ...] = (
    PublishedFamily("stanford2d3ds", "vit_h", "rgb", (1, 2, 3), 59.62, 74.11),
    PublishedFamily("stanford2d3ds", "vit_h", "rgbd", (1, 2, 3), 60.90, 73.95),
    PublishedFamily("stanford2d3ds", "vit_h", "rgbdn", (1, 2, 3), 61.57, 74.04),
    PublishedFamily("stanford2d3ds", "vit_l", "rgbdn", (1, 2, 3), 60.90, 73.09),
    PublishedFamily("stanford2d3ds", "vit_b", "rgbdn", (1, 2, 3), 56.68, 70.49),
    PublishedFamily("matterport3d", "vit_h", "rgb", (), 46.59, None),
    PublishedFamily("matterport3d", "vit_h", "rgbd", (), 48.43, None),
)
PUBLISHED_VARIANTS: tuple[str, ...] = tuple(v for family in PUBLISHED for v in family.variants)

# The fusion settings of the reference's published JSON configs: moving channel and spatial
# attention. Without "efficient_attention" they build the fully connected channel attention;
# the published checkpoints hold ECA, which loading reads off their tensor names.
PUBLISHED_FUSION: dict[str, Any] = {
    "channel_attention": {
        "moving_attention": True,
        "window_size": 8,
        "stride": 4,
        "aggregation": "max",
    },
    "spatial_attention": {
        "moving_attention": True,
        "window_size": 8,
        "stride": 4,
        "aggregation": "none",
    },
    "dual_view_fusion": True,
}


def published_family(variant: str) -> PublishedFamily:
    """The family of a published variant name."""
    for family in PUBLISHED:
        if variant in family.variants:
            return family
    raise ValueError(
        f"{variant!r} is not a published variant; choose one of {list(PUBLISHED_VARIANTS)}"
    )


@dataclass(frozen=True)
class VariantName:
    """What a variant name such as ``stanford2d3ds-vith-rgbdn-fold1`` says (any part may be missing)."""

    dataset: str | None = None
    vit_model: str | None = None
    modalities: tuple[str, ...] | None = None


def parse_variant_name(name: str | None) -> VariantName:
    """Dataset, ViT size and modalities named in a variant or folder name."""
    if not name:
        return VariantName()
    low = Path(name).name.lower()
    dataset = next((d for d in DATASET_INFO if d in low), None)
    vit = re.search(r"vit[-_]?([blh])(?![a-z])", low)
    mods = re.search(r"(?:^|[-_])(rgbdn|rgbd|rgbn|rgb)(?=$|[-_])", low)
    return VariantName(
        dataset=dataset,
        vit_model=f"vit_{vit.group(1)}" if vit else None,
        modalities=MODALITY_TAGS[mods.group(1)] if mods else None,
    )
