"""MCBAM feature fusion: moving channel and spatial attention over the encoder branches.

A *moving* attention slides a k x k window with stride s over the (C, G, G) map,
computes an attention map for each window alone, sums the overlapping window
maps back onto the grid and turns the sum into the final map (aggregation
``none``: sigmoid of the sum; ``mean``: mean of per-window sigmoids; ``max``:
the reference's steep sigmoid ``sigmoid(15 (sum - 0.5))``).

The channel attentions are constant inside a window, so the windows never need
to be unfolded: window statistics are pooling results and the fold is a sum of
boxes, computed here as two small matrix products with 0/1 window-membership
matrices. The spatial attention is constant across channels, so only its
two-channel statistics are unfolded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import AttentionConfig, EncoderConfig


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's odd 1-D kernel size for ``channels`` channels."""
    t = int(abs(math.log2(channels) + b) / gamma)
    return t if t % 2 else t + 1


def window_membership(size: int, window: int, stride: int, device: torch.device) -> Tensor:
    """(size, n_windows) 0/1 matrix: entry [p, w] = 1 when window w covers position p."""
    n = (size - window) // stride + 1
    if n < 1:
        raise ValueError(f"attention window {window} does not fit a map of size {size}")
    pos = torch.arange(size, device=device)[:, None]
    start = torch.arange(n, device=device)[None, :] * stride
    return ((pos >= start) & (pos < start + window)).float()


def aggregate(summed: Tensor, aggregation: str, coverage: Tensor) -> Tensor:
    """Turn the sum of overlapping window maps into the final attention map."""
    if aggregation == "none":
        return torch.sigmoid(summed)
    if aggregation == "mean":
        return summed / coverage
    return torch.sigmoid(15.0 * (summed - 0.5))


class ECALayer(nn.Module):
    """Efficient channel attention: pooled channels -> 1-D conv across channels."""

    def __init__(self, channels: int, cfg: AttentionConfig) -> None:
        super().__init__()
        k = eca_kernel_size(channels, cfg.gamma, cfg.b)
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=cfg.bias)

    def forward(self, avg: Tensor, peak: Tensor) -> Tensor:
        """(..., C) window means (and maxima, unused) -> (..., C) logits."""
        shape = avg.shape
        return self.conv(avg.reshape(-1, 1, shape[-1])).reshape(shape)


class FCChannelLayer(nn.Module):
    """Fully connected channel attention: [avg, max] -> Linear 2C->C -> GELU -> Linear C->C."""

    def __init__(self, channels: int, cfg: AttentionConfig) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(2 * channels, channels, bias=cfg.bias),
            nn.GELU(),
            nn.Linear(channels, channels, bias=cfg.bias),
        )

    def forward(self, avg: Tensor, peak: Tensor) -> Tensor:
        return self.fc(torch.cat([avg, peak], dim=-1))


class SpatialLayer(nn.Module):
    """Spatial attention: [channel mean, channel max] -> k x k conv -> one map."""

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        k = cfg.kernel_size
        self.conv = nn.Conv2d(2, 1, kernel_size=k, padding=k // 2, bias=cfg.bias)

    def forward(self, stats: Tensor) -> Tensor:
        """(n, 2, k, k) -> (n, 1, k, k) logits (zero padding at the window border)."""
        return self.conv(stats)


def _window_geometry(cfg: AttentionConfig, size: int) -> tuple[int, int]:
    """(window, stride); a non-moving attention is one window over the whole map."""
    if cfg.moving_attention:
        return cfg.window_size, cfg.stride
    return size, size


def _window_aggregation(cfg: AttentionConfig) -> str:
    # A single window with "mean" is plain CBAM: sigmoid, then nothing else.
    return cfg.aggregation if cfg.moving_attention else "mean"


class ChannelAttention(nn.Module):
    """Moving (or global) channel attention; ``att_layer`` is ECA or fully connected."""

    def __init__(self, channels: int, cfg: AttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.att_layer = (
            ECALayer(channels, cfg) if cfg.efficient_attention else FCChannelLayer(channels, cfg)
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, G, G) -> x times its channel attention."""
        size = x.shape[-1]
        window, stride = _window_geometry(self.cfg, size)
        aggregation = _window_aggregation(self.cfg)
        avg = F.avg_pool2d(x, window, stride)  # (N, C, n, n): per-window channel means
        peak = (
            F.max_pool2d(x, window, stride) if isinstance(self.att_layer, FCChannelLayer) else avg
        )
        logits = self.att_layer(avg.permute(0, 2, 3, 1), peak.permute(0, 2, 3, 1))
        per_window = logits if aggregation == "none" else torch.sigmoid(logits)
        member = window_membership(size, window, stride, x.device).to(x.dtype)
        # Sum of the boxes of all windows covering each pixel: M (n,n,C) M^T per channel.
        summed = torch.einsum("pi,nijc,qj->ncpq", member, per_window, member)
        coverage = member.sum(1)[:, None] * member.sum(1)[None, :]
        return x * aggregate(summed, aggregation, coverage)


class SpatialAttention(nn.Module):
    """Moving (or global) spatial attention."""

    def __init__(self, cfg: AttentionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.att_layer = SpatialLayer(cfg)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, G, G) -> x times its spatial attention (broadcast over channels)."""
        n, _, size, _ = x.shape
        window, stride = _window_geometry(self.cfg, size)
        aggregation = _window_aggregation(self.cfg)
        stats = torch.stack([x.mean(1), x.amax(1)], dim=1)  # (N, 2, G, G)
        cols = F.unfold(stats, window, stride=stride)  # (N, 2*k*k, L)
        n_win = cols.shape[-1]
        wins = cols.transpose(1, 2).reshape(n * n_win, 2, window, window)
        logits = self.att_layer(wins)
        per_window = logits if aggregation == "none" else torch.sigmoid(logits)
        per_window = per_window.reshape(n, n_win, window * window).transpose(1, 2)
        summed = F.fold(per_window, (size, size), window, stride=stride)  # (N, 1, G, G)
        member = window_membership(size, window, stride, x.device).to(x.dtype)
        coverage = member.sum(1)[:, None] * member.sum(1)[None, :]
        return x * aggregate(summed, aggregation, coverage)


class FusionBlock(nn.Module):
    """One MCBAM block: (N*views*M, E, G, G) branch -> (N*views, P, 4G, 4G)."""

    def __init__(
        self,
        encoder: EncoderConfig,
        num_modalities: int,
        channel_attention: AttentionConfig | None,
        spatial_attention: AttentionConfig | None,
    ) -> None:
        super().__init__()
        e, g, p = encoder.embed_dim, encoder.grid_size, encoder.out_chans
        self.num_modalities = num_modalities
        channels = num_modalities * e
        self.norm = nn.LayerNorm([e, g, g])
        self.channel_attention = (
            ChannelAttention(channels, channel_attention) if channel_attention else None
        )
        self.spatial_attention = SpatialAttention(spatial_attention) if spatial_attention else None
        self.neck = nn.Sequential(
            nn.Conv2d(channels, e, kernel_size=1, bias=False),
            nn.LayerNorm([e, g, g]),
            nn.GELU(),
            nn.Conv2d(e, 2 * p, kernel_size=1, bias=False),
            nn.LayerNorm([2 * p, g, g]),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(2 * p, p, kernel_size=1, bias=False),
            nn.LayerNorm([p, 2 * g, 2 * g]),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        )

    def forward(self, branch: Tensor, final_upsample: bool = True) -> Tensor:
        """(N*views*M, E, G, G) -> (N*views, P, 4G, 4G), or (.., 2G, 2G) without the last upsampling."""
        x = self.norm(branch)
        n, e, g, _ = x.shape
        x = x.reshape(n // self.num_modalities, self.num_modalities * e, g, g)
        if self.channel_attention is not None or self.spatial_attention is not None:
            a = x
            if self.channel_attention is not None:
                a = self.channel_attention(a)
            if self.spatial_attention is not None:
                a = self.spatial_attention(a)
            x = x + a
        return self.neck(x) if final_upsample else self.neck[:-1](x)


class FeatureFuser(nn.Module):
    """B fusion blocks, one per encoder branch; outputs concatenated on channels."""

    def __init__(
        self,
        encoder: EncoderConfig,
        num_modalities: int,
        channel_attention: AttentionConfig | None,
        spatial_attention: AttentionConfig | None,
    ) -> None:
        super().__init__()
        self.fusion_blocks = nn.ModuleList(
            FusionBlock(encoder, num_modalities, channel_attention, spatial_attention)
            for _ in range(encoder.num_branches)
        )

    def forward(self, branches: list[Tensor]) -> Tensor:
        """B x (N*views*M, E, G, G) -> (N*views, B*P, 4G, 4G)."""
        return torch.cat([blk(b) for blk, b in zip(self.fusion_blocks, branches, strict=True)], 1)


@dataclass(frozen=True)
class FuserLayout:
    """What the tensor names and shapes of a :class:`FeatureFuser` reveal."""

    embed_dim: int  # E
    grid_size: int  # G
    out_chans: int  # P
    num_branches: int  # B
    num_modalities: int  # M
    channel_attention: str  # "eca", "fc" or "none"
    spatial_attention: bool


def read_fuser_layout(
    state: Mapping[str, Tensor], prefix: str = "feature_fuser."
) -> FuserLayout | None:
    """The layout of the fusion tensors in ``state``, or None when it holds no fusion blocks.

    Raises KeyError naming a tensor that a fusion block must have.
    """
    pattern = re.compile(re.escape(prefix) + r"fusion_blocks\.(\d+)\.")
    blocks = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if not blocks:
        return None
    b0 = f"{prefix}fusion_blocks.0."
    e, g = state[b0 + "norm.weight"].shape[:2]  # LayerNorm [E, G, G]
    if b0 + "channel_attention.att_layer.conv.weight" in state:
        channel = "eca"
    elif b0 + "channel_attention.att_layer.fc.0.weight" in state:
        channel = "fc"
    else:
        channel = "none"
    return FuserLayout(
        embed_dim=int(e),
        grid_size=int(g),
        out_chans=int(state[b0 + "neck.6.weight"].shape[0]),  # the last 1x1 conv: 2P -> P
        num_branches=len(blocks),
        num_modalities=int(state[b0 + "neck.0.weight"].shape[1]) // int(e),  # M*E -> E
        channel_attention=channel,
        spatial_attention=b0 + "spatial_attention.att_layer.conv.weight" in state,
    )
