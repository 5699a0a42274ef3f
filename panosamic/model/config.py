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
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from ..hub.catalog import VIT_MODELS
from ..instances.config import AMGConfig, NeckLayout, PromptDecoderConfig
from ..modalities import MODALITIES, normalize_modalities

AGGREGATIONS: tuple[str, ...] = ("none", "mean", "max")
# ECA (the published checkpoints, the paper's parameter counts) or the fully connected MLP
# (what the reference's JSON configs build: no "efficient_attention" key)
CHANNEL_ATTENTION_KINDS: tuple[str, ...] = ("eca", "fc", "none")
# fp32; bf16 / fp16: the network under autocast; int8: the encoder's linear layers as int8
# products (CPU only), the rest as bf16
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
# The encoder's linear layers by kind: the name inside a block (``blocks.<i>.<name>``).
INT8_LAYER_KINDS: dict[str, str] = {
    "qkv": "attn.qkv",
    "proj": "attn.proj",
    "lin1": "mlp.lin1",
    "lin2": "mlp.lin2",
}


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


@dataclass(frozen=True)
class Int8Layers:
    """Which of the encoder's linear layers run as int8 products under ``precision="int8"``.

    ``kinds``: among ``qkv``, ``proj``, ``lin1``, ``lin2`` (:data:`INT8_LAYER_KINDS`);
    ``dense_blocks``: block indices kept entirely dense (bfloat16). Layers not
    selected run as bfloat16 products.
    """

    kinds: tuple[str, ...] = tuple(INT8_LAYER_KINDS)
    dense_blocks: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "dense_blocks", tuple(self.dense_blocks))
        unknown = set(self.kinds) - set(INT8_LAYER_KINDS)
        if unknown:
            raise ValueError(
                f"unknown int8 layer kinds {sorted(unknown)}; known: {list(INT8_LAYER_KINDS)}"
            )

    def quantizes(self, name: str) -> bool:
        """Whether the encoder layer ``name`` (``blocks.<i>.attn.qkv`` ...) is int8."""
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit():
            return False
        if int(parts[1]) in self.dense_blocks:
            return False
        return any(parts[2] == INT8_LAYER_KINDS[kind] for kind in self.kinds)


# What precision="int8" quantises: the attention's projections. The MLP's layers stay
# bfloat16: each kind alone costs 0.4-0.5 points of argmax agreement with float32 on the
# real-size random ViT-B, q/k/v and the output projection 0.06 and 0.14
# (benchmarks/bench_int8_layers.py, docs/performance.md).
DEFAULT_INT8_LAYERS = Int8Layers(kinds=("qkv", "proj"))


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

    @property
    def neck_layout(self) -> NeckLayout:
        """How the encoder neck batch is ordered, for the instance path."""
        return NeckLayout(self.modalities, self.num_views, self.encoder.img_size, self.input_size)

    @property
    def channel_attention_kind(self) -> str:
        """``"eca"``, ``"fc"`` (the fully connected MLP) or ``"none"``."""
        return channel_attention_kind(self.channel_attention)

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


def channel_attention_kind(section: AttentionConfig | Mapping[str, Any] | None) -> str:
    """The kind of a channel attention, from its config or its JSON section."""
    if section is None:
        return "none"
    efficient = (
        section.get("efficient_attention", False)
        if isinstance(section, Mapping)
        else section.efficient_attention
    )
    return "eca" if efficient else "fc"


def with_channel_attention(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """A JSON config with its channel attention switched to ``"eca"`` or ``"fc"``."""
    if kind not in ("eca", "fc"):
        raise ValueError(f"channel attention must be 'eca' or 'fc', got {kind!r}")
    section = config.get("channel_attention")
    if section is None:
        raise ValueError(f"channel attention {kind!r}: the config has no channel attention")
    return {**config, "channel_attention": {**section, "efficient_attention": kind == "eca"}}


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
