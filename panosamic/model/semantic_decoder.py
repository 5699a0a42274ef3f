"""Semantic decoder: decoder head, spherical dual-view attention, baseline decoder."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SphericalConv2d(nn.Module):
    """Conv2d that wraps around horizontally (360 degrees) and zero-pads vertically."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        p = self.pad
        x = F.pad(x, (p, p, 0, 0), mode="circular")
        x = F.pad(x, (0, 0, p, p))
        return self.conv(x)


def horizontal_positional_encoding(
    channels: int,
    width: int,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Sinusoidal table over the width, (1, C, 1, W), computed in float64.

    pe[w, 2i] = sin(w * exp(-2i ln(10000) / C)), pe[w, 2i + 1] = cos(same).
    """
    pos = torch.arange(width, dtype=torch.float64)[:, None]
    freq = torch.exp(
        torch.arange(0, channels, 2, dtype=torch.float64) * (-math.log(10000.0) / channels)
    )
    pe = torch.zeros(width, channels, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : channels // 2]
    return pe.to(torch.float32).to(dtype).T.reshape(1, channels, 1, width).to(device)


def add_view_positional_encoding(fused: Tensor) -> Tensor:
    """Add the horizontal encoding to view 0 and its half-turn roll to view 1.

    ``fused`` is (N*2, C, H', W') with views interleaved [img0 v0, img0 v1, ...].
    """
    _, c, _, w = fused.shape
    pe = horizontal_positional_encoding(c, w, fused.device, fused.dtype)
    both = torch.cat([pe, torch.roll(pe, w // 2, dims=-1)])  # (2, C, 1, W')
    return (fused.unflatten(0, (-1, 2)) + both).flatten(0, 1)


class SemanticDecoder(nn.Module):
    """Decoder head (B*P -> K) and, in dual view, the spherical attention blend."""

    def __init__(
        self, in_channels: int, channels: int, size: int, num_classes: int, dual_view: bool
    ) -> None:
        super().__init__()
        self.decoder_head = nn.Sequential(
            nn.Conv2d(in_channels, channels, kernel_size=1),
            nn.LayerNorm([channels, size, size]),
            nn.GELU(),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )
        self.decoder_attention = (
            nn.Sequential(
                SphericalConv2d(2 * num_classes, num_classes, 7),
                nn.GELU(),
                SphericalConv2d(num_classes, 1, 3),
                nn.Sigmoid(),
            )
            if dual_view
            else None
        )

    def blend_views(self, logits: Tensor) -> Tensor:
        """(N*2, K, H', W') interleaved views -> (N, K, H', W') in view 0's frame."""
        pairs = logits.unflatten(0, (-1, 2))
        x1 = pairs[:, 0]
        x2 = torch.roll(pairs[:, 1], -(logits.shape[-1] // 2), dims=-1)
        alpha = self.decoder_attention(torch.cat([x1, x2], dim=1))  # (N, 1, H', W')
        return alpha * x1 + (1 - alpha) * x2

    def forward(self, fused: Tensor) -> Tensor:
        logits = self.decoder_head(fused)
        return logits if self.decoder_attention is None else self.blend_views(logits)

    def head_from_blocks(self, block_maps: list[Tensor], positional: bool) -> Tensor:
        """Decoder-head logits straight from the fusion blocks' outputs before their last upsampling.

        ``block_maps`` are B maps (N*views, P, 2G, 2G). Equal (up to round-off) to
        ``decoder_head(cat(up2(maps)) + pe)``: the 1x1 conv is split per block and
        applied before the (linear) bilinear upsampling, and the positional
        encoding, constant over rows, goes through the conv as one row. The
        concatenated (N*views, B*P, 4G, 4G) map is never built.
        """
        conv, norm, act, classify = self.decoder_head
        weights = conv.weight.split(block_maps[0].shape[1], dim=1)
        mixed = None
        for weight, block in zip(weights, block_maps, strict=True):
            term = F.conv2d(block, weight)
            mixed = term if mixed is None else mixed.add_(term)
        mixed = F.interpolate(mixed, scale_factor=2, mode="bilinear", align_corners=False)
        offset = conv.bias.view(1, -1, 1, 1)
        if positional:
            c, w = conv.weight.shape[1], mixed.shape[-1]
            pe = horizontal_positional_encoding(c, w, mixed.device, mixed.dtype)
            pe = torch.cat([pe, torch.roll(pe, w // 2, dims=-1)])  # (2, C, 1, W')
            offset = F.conv2d(pe, conv.weight).unsqueeze(0) + offset.unsqueeze(
                0
            )  # (1, 2, P, 1, W')
            mixed = (mixed.unflatten(0, (-1, 2)) + offset).flatten(0, 1)
        else:
            mixed = mixed + offset
        return classify(act(norm(mixed)))


class BaselineDecoder(nn.Module):
    """Ablation A: concatenated SAM neck outputs (N, M*P, G, G) -> (N, K, 4G, 4G)."""

    def __init__(self, num_modalities: int, channels: int, grid: int, num_classes: int) -> None:
        super().__init__()
        self.decoder_head = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(num_modalities * channels, channels, kernel_size=1),
            nn.LayerNorm([channels, 2 * grid, 2 * grid]),
            nn.GELU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )

    def forward(self, necks: Tensor) -> Tensor:
        return self.decoder_head(necks)


@dataclass(frozen=True)
class DecoderLayout:
    """What the tensor names and shapes of a semantic decoder reveal.

    For the baseline decoder also its input: ``out_chans`` (P), ``grid_size``
    (G) and ``num_modalities`` (M); 0 for :class:`SemanticDecoder`.
    """

    num_classes: int
    dual_view: bool
    baseline: bool
    out_chans: int = 0
    grid_size: int = 0
    num_modalities: int = 0


def read_decoder_layout(
    state: Mapping[str, Tensor], baseline: bool, prefix: str = "semantic_decoder."
) -> DecoderLayout:
    """The layout of a :class:`SemanticDecoder` (or, with ``baseline``, a
    :class:`BaselineDecoder`) in ``state``. Raises KeyError naming a missing tensor."""
    head = prefix + "decoder_head."
    dual = any(k.startswith(prefix + "decoder_attention.") for k in state)
    if not baseline:
        return DecoderLayout(int(state[head + "3.weight"].shape[0]), dual, False)
    conv_in = state[head + "1.weight"]  # 1x1 conv M*P -> P
    p = int(conv_in.shape[0])
    return DecoderLayout(
        num_classes=int(state[head + "5.weight"].shape[0]),
        dual_view=dual,
        baseline=True,
        out_chans=p,
        grid_size=int(state[head + "2.weight"].shape[-1]) // 2,  # LayerNorm [P, 2G, 2G]
        num_modalities=int(conv_in.shape[1]) // p,
    )
