"""Settings of the instance path: SAM's prompt modules, the neck it reads, its mask generation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from ..modalities import known_modalities


@dataclass(frozen=True)
class PromptDecoderConfig:
    """SAM's prompt encoder and mask decoder (official values by default)."""

    mask_in_chans: int = 16
    num_multimask_outputs: int = 3
    transformer_depth: int = 2
    mlp_dim: int = 2048
    num_heads: int = 8
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class NeckLayout:
    """What the encoder neck batch holds.

    Rows are ordered [img0 v0 m0..mM-1, img0 v1 m0..., img1 ...] (N images,
    V views, M modalities); each row is the (C, G, G) embedding of a padded
    ``canvas`` x ``canvas`` image whose top-left ``network_hw`` is the panorama.
    """

    modalities: tuple[str, ...]
    num_views: int
    canvas: int
    network_hw: tuple[int, int]

    def rows(self, image: int, view: int, chosen: Sequence[str] | None = None) -> list[int]:
        """Rows of ``image``'s modalities ``chosen`` (default: all) in ``view``."""
        first = (image * self.num_views + view) * len(self.modalities)
        return [first + self.modalities.index(m) for m in (chosen or self.modalities)]


POINT_GRIDS: tuple[str, ...] = ("canvas", "image")
DECODERS: tuple[str, ...] = ("factored", "exact")


@dataclass(frozen=True)
class AMGConfig:
    """SAM's automatic mask generation inside PanoSAMic (the JSON ``"amg"`` section).

    The defaults are the reference's constants (REFERENCE_BEHAVIOUR.md section 6),
    so the published instance masks and refinement numbers are reproduced.
    ``None`` thresholds follow ``box_nms_thresh`` as in the reference.

    Beyond the reference: ``point_grid="image"`` drops the grid points that lie
    in the zero padding below (or right of) the image; ``modalities`` restricts
    the mask generation to some of the model's modalities; a positive
    ``min_mask_region_area`` removes small 4-connected regions (the paper lists
    it, the reference leaves it off); ``decoder`` picks how SAM's mask decoder
    is computed: ``"factored"`` (fast, SAM's numbers up to float32 round-off,
    :mod:`.factored_decoder`) or ``"exact"`` (SAM's operations bit for bit,
    :mod:`.exact_decoder`).
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    min_mask_region_area: int = 0
    multimask_output: bool = True
    merge_iou_thresh: float | None = None  # cross-modality greedy merge
    dual_view_iou_thresh: float | None = None  # cross-view fusion
    dual_view_quality_weights: tuple[float, float] = (1.0, 0.0)  # predicted_iou, stability
    dual_view_quality_margin: float = 0.01
    point_grid: str = "canvas"
    modalities: tuple[str, ...] | None = None
    decoder: str = "factored"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dual_view_quality_weights", tuple(self.dual_view_quality_weights))
        if self.modalities is not None:
            object.__setattr__(self, "modalities", known_modalities(self.modalities))
            if not self.modalities:
                raise ValueError("amg modalities is empty: name at least one, or null for all")
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ValueError(
                f"amg points_per_side and points_per_batch must be positive, got "
                f"{self.points_per_side} and {self.points_per_batch}"
            )
        if self.point_grid not in POINT_GRIDS:
            raise ValueError(
                f"amg point_grid must be one of {POINT_GRIDS}, got {self.point_grid!r}"
            )
        if self.decoder not in DECODERS:
            raise ValueError(f"amg decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.min_mask_region_area < 0:
            raise ValueError(
                f"amg min_mask_region_area must be >= 0, got {self.min_mask_region_area}"
            )
        if len(self.dual_view_quality_weights) != 2:
            raise ValueError(
                "amg dual_view_quality_weights must be two numbers (predicted_iou, stability_score)"
            )

    @property
    def merge_threshold(self) -> float:
        return self.box_nms_thresh if self.merge_iou_thresh is None else self.merge_iou_thresh

    @property
    def dual_view_threshold(self) -> float:
        return (
            self.box_nms_thresh if self.dual_view_iou_thresh is None else self.dual_view_iou_thresh
        )

    @classmethod
    def from_json(cls, section: dict[str, Any] | None) -> AMGConfig:
        """The JSON ``"amg"`` section (keys as above; ``//`` keys are comments)."""
        values = {k: v for k, v in (section or {}).items() if not k.startswith("//")}
        # configs saved before version 0.2 carry the reference-order switch, always off
        if values.pop("exact_reference_order", False):
            raise ValueError(
                "amg exact_reference_order is gone: the reference-order instance path is a "
                "test oracle (tests/instances_reference.py); use decoder='exact' for SAM's "
                "decoder bit for bit"
            )
        return cls().updated(values, what="config keys")

    def updated(self, changes: Mapping[str, Any], what: str = "settings") -> AMGConfig:
        """A copy with ``changes`` (field names) applied; unknown names are an error
        ("unknown amg <what> ...")."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown amg {what} {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **changes)
