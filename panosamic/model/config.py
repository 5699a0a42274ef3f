"""Configuration of a PanoSAMic model: encoder size, modalities, fusion, decoder.

The JSON configs of the reference (``config/config_*.json``) describe the fusion
attentions, the view mode and the training recipe; the encoder size, the
modalities and the number of classes come from elsewhere (the command line or
the checkpoint). :func:`model_config_from_dict` merges both into one
:class:`PanoSAMicConfig`. A config may also carry an ``"encoder"`` section that
describes a custom (for example tiny) SAM image encoder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

MODALITIES: tuple[str, ...] = ("image", "depth", "normals")
AGGREGATIONS: tuple[str, ...] = ("none", "mean", "max")
VIT_MODELS: tuple[str, ...] = ("vit_b", "vit_l", "vit_h")


@dataclass(frozen=True)
class EncoderConfig:
    """Hyperparameters of SAM's ViT image encoder (official defaults: ViT-B)."""

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    out_chans: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "global_attn_indexes", tuple(self.global_attn_indexes))
        if self.img_size % self.patch_size:
            raise ValueError(
                f"encoder img_size {self.img_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"encoder embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        bad = [i for i in self.global_attn_indexes if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"global_attn_indexes {bad} outside the {self.depth} encoder blocks")

    @property
    def grid_size(self) -> int:
        """G: tokens per side of the encoder canvas."""
        return self.img_size // self.patch_size

    @property
    def num_branches(self) -> int:
        """B: one branch per global-attention block."""
        return len(self.global_attn_indexes)


VIT_PRESETS: dict[str, EncoderConfig] = {
    "vit_b": EncoderConfig(
        embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)
    ),
    "vit_l": EncoderConfig(
        embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)
    ),
    "vit_h": EncoderConfig(
        embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)
    ),
}


@dataclass(frozen=True)
class AttentionConfig:
    """One MCBAM attention (channel or spatial), keys as in the reference JSON."""

    moving_attention: bool = True
    window_size: int = 8
    stride: int = 4
    aggregation: str = "none"
    efficient_attention: bool = False  # channel attention only: ECA instead of the MLP
    gamma: int = 2  # ECA kernel-size rule
    b: int = 1  # ECA kernel-size rule
    bias: bool = False
    kernel_size: int = 5  # spatial attention only

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"attention aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}"
            )
        if self.window_size < 1 or self.stride < 1:
            raise ValueError("attention window_size and stride must be positive")


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
    :mod:`.factored_decoding`) or ``"exact"`` (SAM's operations bit for bit,
    :mod:`.prompt_decoding`); ``exact_reference_order`` runs the
    straightforward reference order (slow; SAM's decoder, bit for bit).
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
    exact_reference_order: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dual_view_quality_weights", tuple(self.dual_view_quality_weights))
        if self.modalities is not None:
            object.__setattr__(self, "modalities", _checked_modalities(self.modalities))
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
        return cls().updated(values, what="config keys")

    def updated(self, changes: Mapping[str, Any], what: str = "settings") -> AMGConfig:
        """A copy with ``changes`` (field names) applied; unknown names are an error
        ("unknown amg <what> ...")."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown amg {what} {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **changes)


@dataclass(frozen=True)
class PanoSAMicConfig:
    """Everything needed to build a :class:`~panosamic.model.PanoSAMic`."""

    encoder: EncoderConfig = field(default_factory=lambda: VIT_PRESETS["vit_h"])
    modalities: tuple[str, ...] = MODALITIES
    num_classes: int = 13
    dual_view_fusion: bool = True
    channel_attention: AttentionConfig | None = None
    spatial_attention: AttentionConfig | None = None
    basic_fusion: str | None = None
    prompt_decoder: PromptDecoderConfig = field(default_factory=PromptDecoderConfig)
    vit_model: str | None = "vit_h"  # None for a custom encoder
    amg: AMGConfig = field(default_factory=AMGConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", normalize_modalities(self.modalities))
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.basic_fusion not in (None, "concat"):
            raise ValueError(f"basic_fusion must be null or 'concat', got {self.basic_fusion!r}")
        if self.basic_fusion and self.dual_view_fusion:
            raise ValueError("the baseline decoder (basic_fusion 'concat') is single view only")
        if self.vit_model is not None and self.vit_model not in VIT_MODELS:
            raise ValueError(f"vit_model must be one of {VIT_MODELS}, got {self.vit_model!r}")
        extra = set(self.amg.modalities or ()) - set(self.modalities)
        if extra:
            raise ValueError(
                f"amg modalities {sorted(extra)} are not among the model's {list(self.modalities)}"
            )

    @property
    def num_views(self) -> int:
        return 2 if self.dual_view_fusion else 1

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the network runs at: half the canvas high, the canvas wide."""
        return self.encoder.img_size // 2, self.encoder.img_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PanoSAMicConfig:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["encoder"] = EncoderConfig(**data["encoder"])
        data["prompt_decoder"] = PromptDecoderConfig(**data.get("prompt_decoder", {}))
        data["amg"] = AMGConfig.from_json(data.get("amg"))
        for key in ("channel_attention", "spatial_attention"):
            if data.get(key) is not None:
                data[key] = AttentionConfig(**data[key])
        data["modalities"] = tuple(data["modalities"])
        return cls(**data)


def normalize_modalities(modalities: Any) -> tuple[str, ...]:
    """Validate a modality list and put it in the canonical order image, depth, normals.

    Accepts a sequence or a comma-separated string. ``image`` is mandatory.
    """
    names = _checked_modalities(modalities)
    if "image" not in names:
        raise ValueError(f"the 'image' modality is required, got {list(names)}")
    return names


def _checked_modalities(modalities: Any) -> tuple[str, ...]:
    """Known, distinct modality names in canonical order."""
    if isinstance(modalities, str):
        modalities = [m.strip() for m in modalities.split(",") if m.strip()]
    names = list(modalities)
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {list(MODALITIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"modalities listed twice: {names}")
    return tuple(m for m in MODALITIES if m in names)


def _attention_from_json(section: dict[str, Any] | None) -> AttentionConfig | None:
    if section is None:
        return None
    known = {f.name for f in fields(AttentionConfig)}
    values = {k: v for k, v in section.items() if not k.startswith("//")}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown attention config keys {sorted(unknown)}; known: {sorted(known)}")
    return AttentionConfig(**values)


def encoder_config(vit_model: str | None, custom: dict[str, Any] | None = None) -> EncoderConfig:
    """The encoder of a ViT preset, or a custom one from a JSON ``encoder`` section."""
    if custom is not None:
        return EncoderConfig(**{k: v for k, v in custom.items() if not k.startswith("//")})
    if vit_model not in VIT_PRESETS:
        raise ValueError(f"vit_model must be one of {VIT_MODELS}, got {vit_model!r}")
    return VIT_PRESETS[vit_model]


def model_config_from_dict(
    config: dict[str, Any],
    *,
    vit_model: str | None = "vit_h",
    modalities: Any = MODALITIES,
    num_classes: int = 13,
) -> PanoSAMicConfig:
    """Build a model config from a reference-style JSON dict plus the run's choices.

    Keys the reference reads with defaults (``dual_view_fusion`` True, attentions
    and ``basic_fusion`` None) get the same defaults here. An ``encoder`` section
    replaces the ViT preset (``vit_model`` is then ignored); ``modalities`` and
    ``num_classes`` in the dict win over the arguments. An ``amg`` section sets
    the instance path's constants (:class:`AMGConfig`).
    """
    custom = config.get("encoder")
    prompt = config.get("prompt_decoder")
    return PanoSAMicConfig(
        encoder=encoder_config(vit_model, custom),
        modalities=config.get("modalities", modalities),
        num_classes=int(config.get("num_classes", num_classes)),
        dual_view_fusion=bool(config.get("dual_view_fusion", True)),
        channel_attention=_attention_from_json(config.get("channel_attention")),
        spatial_attention=_attention_from_json(config.get("spatial_attention")),
        basic_fusion=config.get("basic_fusion"),
        prompt_decoder=PromptDecoderConfig(**prompt) if prompt else PromptDecoderConfig(),
        vit_model=None if custom is not None else vit_model,
        amg=AMGConfig.from_json(config.get("amg")),
    )


def packaged_config_names() -> list[str]:
    """Names of the JSON configs shipped with the package (``config_*.json``)."""
    root = resources.files("panosamic") / "configs"
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".json"))


def resolve_config_path(config_path: str | Path) -> Path:
    """A real file wins; otherwise ``config/<name>.json`` names a packaged config."""
    path = Path(config_path).expanduser()
    if path.is_file():
        return path
    packaged = resources.files("panosamic") / "configs" / path.name
    if packaged.is_file():
        return Path(str(packaged))
    raise FileNotFoundError(
        f"config {str(config_path)!r} is neither a file nor a packaged config; "
        f"packaged configs: {packaged_config_names()}"
    )


def load_config_json(config_path: str | Path) -> dict[str, Any]:
    """Read a JSON config (a path, or the name of a packaged config)."""
    path = resolve_config_path(config_path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"config {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must hold a JSON object")
    return data


def with_overrides(config: PanoSAMicConfig, **changes: Any) -> PanoSAMicConfig:
    return replace(config, **changes)
