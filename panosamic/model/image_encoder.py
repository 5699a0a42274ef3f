"""SAM's ViT image encoder, returning the global-attention branches and the neck.

Parameter names follow the official ``segment_anything`` checkpoints
(``image_encoder.blocks.0.attn.qkv.weight`` ...), so a SAM ``.pth`` loads as it is.
Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`
with SAM's decomposed relative-position bias as the additive mask; global
attention is split into query chunks so the N x N bias never has to exist
whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import EncoderConfig

# Upper bound for one chunk of relative-position bias (elements), ~256 MB in float32.
_BIAS_CHUNK_ELEMENTS = 64 * 1024 * 1024


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (N, C, H, W) map (SAM's neck norm)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """(N, 3, S, S) image -> (N, G, G, E) tokens."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(self.act(self.lin1(x)))


def relative_position_table(size: int, rel_pos: Tensor) -> Tensor:
    """(size, size, d) table R[i, j] = rel_pos[i - j + size - 1]."""
    if rel_pos.shape[0] != 2 * size - 1:
        raise ValueError(
            f"relative position table has {rel_pos.shape[0]} rows, expected {2 * size - 1} "
            f"for a {size} x {size} attention grid"
        )
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + size - 1]


class Attention(nn.Module):
    """Multi-head self-attention with SAM's decomposed relative-position bias."""

    def __init__(self, dim: int, num_heads: int, grid: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, dim) -> (B, H, W, dim)."""
        b, h, w, dim = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, d)
        rel_h = relative_position_table(h, self.rel_pos_h)  # (h, h, d)
        rel_w = relative_position_table(w, self.rel_pos_w)  # (w, w, d)
        out = torch.empty_like(q)
        rows = max(1, min(h, _BIAS_CHUNK_ELEMENTS // max(1, b * heads * w * h * w)))
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            qc = q[:, :, r0 * w : r1 * w]
            qr = qc.reshape(b, heads, r1 - r0, w, -1)
            bias_h = torch.einsum("bnhwd,hkd->bnhwk", qr, rel_h[r0:r1])
            bias_w = torch.einsum("bnhwd,wkd->bnhwk", qr, rel_w)
            bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(
                b, heads, (r1 - r0) * w, h * w
            )
            out[:, :, r0 * w : r1 * w] = F.scaled_dot_product_attention(qc, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(b, h, w, dim)
        return self.proj(out)


def window_partition(x: Tensor, window: int) -> tuple[Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, window, window, C), zero-padding H and W up to the window."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    x: Tensor, window: int, padded: tuple[int, int], hw: tuple[int, int]
) -> Tensor:
    """Inverse of :func:`window_partition`, dropping the padding."""
    hp, wp = padded
    h, w = hw
    b = x.shape[0] // ((hp // window) * (wp // window))
    x = x.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :]


class Block(nn.Module):
    """Transformer block: windowed attention (window > 0) or global attention (window 0)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window: int, grid: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, grid=window if window > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window > 0:
            hw = (x.shape[1], x.shape[2])
            x, padded = window_partition(x, self.window)
            x = window_unpartition(self.attn(x), self.window, padded, hw)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """SAM's image encoder.

    ``forward`` maps a normalised, padded canvas (N, 3, S, S) to the neck output
    (N, P, G, G) and the branches: the token maps after each global-attention
    block, each (N, E, G, G).
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        grid = config.grid_size
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, config.embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                config.embed_dim,
                config.num_heads,
                config.mlp_ratio,
                window=0 if i in config.global_attn_indexes else config.window_size,
                grid=grid,
            )
            for i in range(config.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(config.embed_dim, config.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(config.out_chans),
        )

    def forward(self, x: Tensor, with_neck: bool = True) -> tuple[Tensor | None, list[Tensor]]:
        """(N, 3, S, S) -> (neck (N, P, G, G) or None, [branch (N, E, G, G)] * B)."""
        x = self.patch_embed(x) + self.pos_embed
        branches = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.config.global_attn_indexes:
                branches.append(x.permute(0, 3, 1, 2))
        neck = self.neck(x.permute(0, 3, 1, 2)) if with_neck else None
        return neck, branches
