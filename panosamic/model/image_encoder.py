"""SAM's ViT image encoder, returning the global-attention branches and the neck.

Parameter names follow the official ``segment_anything`` checkpoints
(``image_encoder.blocks.0.attn.qkv.weight`` ...), so a SAM ``.pth`` loads as it is.

The arithmetic is the official encoder's; the order of work is arranged for
speed and memory (all rewrites are exact up to float round-off):

* attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`
  with SAM's decomposed relative-position bias as the additive mask, built
  per (head, query-row chunk) small enough to stay in the CPU cache, so the
  N x N bias never exists whole;
* windowed blocks project q, k, v and the output only for the real tokens: the
  zero tokens that pad the grid up to whole windows project to the bias
  vector, which is filled in directly;
* under ``torch.no_grad`` the blocks update the token map in place, a few
  images at a time, and the MLP runs in token chunks, so neither the q/k/v
  projections nor the 4x-wide hidden layer ever exist for the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.cpu_parallel import image_parallel_enabled, plan_workers, run_split
from .config import EncoderConfig

# Elements of relative-position bias per SDPA call: on a CPU small enough for the L3
# cache; on an accelerator large enough to keep the kernels busy.
_BIAS_CHUNK_ELEMENTS = {"cpu": 1024 * 1024}
_BIAS_CHUNK_ELEMENTS_ACCELERATOR = 64 * 1024 * 1024
# Tokens per chunk for q/k/v projection + attention and for the MLP (bounds peak memory).
_TOKEN_CHUNK = 4096


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

    def add_to_(self, x: Tensor, normed: Tensor) -> None:
        """x += mlp(normed), token chunk by token chunk (inference only)."""
        flat_x, flat_n = x.view(-1, x.shape[-1]), normed.view(-1, normed.shape[-1])
        for start in range(0, flat_x.shape[0], _TOKEN_CHUNK):
            part = slice(start, start + _TOKEN_CHUNK)
            hidden = F.linear(flat_n[part], self.lin1.weight, self.lin1.bias)
            flat_x[part] += F.linear(F.gelu(hidden), self.lin2.weight, self.lin2.bias)


def relative_position_table(size: int, rel_pos: Tensor) -> Tensor:
    """(size, size, d) table R[i, j] = rel_pos[i - j + size - 1]."""
    if rel_pos.shape[0] != 2 * size - 1:
        raise ValueError(
            f"relative position table has {rel_pos.shape[0]} rows, expected {2 * size - 1} "
            f"for a {size} x {size} attention grid"
        )
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + size - 1]


def attention_with_rel_pos(
    q: Tensor, k: Tensor, v: Tensor, rel_h: Tensor, rel_w: Tensor, hw: tuple[int, int]
) -> Tensor:
    """softmax(q k^T / sqrt(d) + B) v with SAM's decomposed bias B.

    q, k, v: (n, N, d) with N = h * w tokens in row-major order; rel_h (h, h, d),
    rel_w (w, w, d). B[(i, j), (k, l)] = q_ij . rel_h[i, k] + q_ij . rel_w[j, l].
    The two small factors of B are computed once; B itself is built and consumed
    per slice of (n, query rows) that fits the cache.
    """
    n, tokens, d = q.shape
    h, w = hw
    out = torch.empty_like(q)
    budget = _BIAS_CHUNK_ELEMENTS.get(q.device.type, _BIAS_CHUNK_ELEMENTS_ACCELERATOR)
    rows = max(1, min(h, budget // (w * tokens)))
    group = max(1, min(n, budget // (rows * w * tokens)))
    grid_q = q.view(n, h, w, d)
    bias_h = torch.einsum("bhwd,hkd->bhwk", grid_q, rel_h)  # (n, h, w, h)
    bias_w = torch.einsum("bhwd,wkd->bhwk", grid_q, rel_w)  # (n, h, w, w)
    # bfloat16 on the CPU: SDPA computes in float32 there, plain batched matmuls do not.
    manual = q.dtype == torch.bfloat16 and q.device.type == "cpu"
    k_t = k.transpose(1, 2).contiguous() if manual else k  # once, not per chunk
    buffer = q.new_empty(group, rows, w, h, w)  # one chunk of B, reused
    for g0 in range(0, n, group):
        g = slice(g0, g0 + group)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            queries = slice(r0 * w, r1 * w)
            qc = q[g, queries]
            chunk = buffer[: qc.shape[0], : r1 - r0]
            torch.add(bias_h[g, r0:r1, :, :, None], bias_w[g, r0:r1, :, None, :], out=chunk)
            bias = chunk.view(qc.shape[0], qc.shape[1], tokens)
            if manual:
                scores = torch.baddbmm(bias, qc, k_t[g], alpha=d**-0.5)
                torch.bmm(scores.softmax(-1), v[g], out=out[g, queries])
            else:
                out[g, queries] = F.scaled_dot_product_attention(qc, k[g], v[g], attn_mask=bias)
    return out


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

    def core(self, qkv: Tensor) -> Tensor:
        """Attention of projected tokens: (b, h, w, 3*dim) -> (b, h, w, dim), before ``proj``."""
        b, h, w, three_dim = qkv.shape
        heads, d = self.num_heads, three_dim // (3 * self.num_heads)
        parts = qkv.reshape(b, h * w, 3, heads, d).permute(2, 0, 3, 1, 4)  # (3, b, heads, N, d)
        q, k, v = (p.reshape(b * heads, h * w, d) for p in parts.unbind(0))
        rel_h = relative_position_table(h, self.rel_pos_h)
        rel_w = relative_position_table(w, self.rel_pos_w)
        out = attention_with_rel_pos(q, k, v, rel_h, rel_w, (h, w))
        return out.view(b, heads, h, w, d).permute(0, 2, 3, 1, 4).reshape(b, h, w, heads * d)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, dim) -> (B, H, W, dim)."""
        return self.proj(self.core(self.qkv(x)))


def window_partition(x: Tensor, window: int, pad_value: Tensor | None = None) -> Tensor:
    """(B, H, W, C) -> (B * nW, window, window, C), padding H and W up to whole windows.

    The padding is zero, or the vector ``pad_value`` (C,) when given.
    """
    b, h, w, c = x.shape
    hp, wp = h + (-h) % window, w + (-w) % window
    if (hp, wp) != (h, w):
        padded = (
            x.new_zeros(b, hp, wp, c)
            if pad_value is None
            else pad_value.expand(b, hp, wp, c).clone()
        )
        padded[:, :h, :w] = x
        x = padded
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_unpartition(x: Tensor, window: int, hw: tuple[int, int]) -> Tensor:
    """Inverse of :func:`window_partition`, dropping the padding."""
    h, w = hw
    hp, wp = h + (-h) % window, w + (-w) % window
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

    def attention(self, normed: Tensor) -> Tensor:
        """Attention output of the normed tokens, (B, H, W, dim), projections on real tokens only."""
        attn = self.attn
        qkv = attn.qkv(normed)
        if self.window > 0:
            hw = (normed.shape[1], normed.shape[2])
            # A padding token is zero after norm1, so its projection is the bias.
            windows = window_partition(qkv, self.window, pad_value=attn.qkv.bias)
            # contiguous: on the cropped view, matmul would copy the proj weight once per row
            out = window_unpartition(attn.core(windows), self.window, hw).contiguous()
        else:
            out = attn.core(qkv)
        return attn.proj(out)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def forward_(self, x: Tensor) -> Tensor:
        """In-place forward for inference: updates and returns ``x``, a few images at a time."""
        group = max(1, _TOKEN_CHUNK // (x.shape[1] * x.shape[2]))
        for start in range(0, x.shape[0], group):
            part = x[start : start + group]
            part += self.attention(self.norm1(part))
            self.mlp.add_to_(part, self.norm2(part))
        return x


@contextmanager
def lowered_weights(module: nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Hold the matmul weights (linear, conv, relative positions) in ``dtype`` meanwhile.

    Under autocast a float32 weight is cast again at every call; casting each
    once per forward saves that traffic. LayerNorms and the absolute position
    embedding stay in float32, and so does the residual stream.
    """
    saved = []
    for sub in module.modules():
        names = ("weight", "bias") if isinstance(sub, (nn.Linear, nn.Conv2d)) else ()
        names = ("rel_pos_h", "rel_pos_w") if isinstance(sub, Attention) else names
        for name in names:
            param = getattr(sub, name)
            if param is not None and param.dtype != dtype:
                saved.append((param, param.data))
                param.data = param.data.to(dtype)
    try:
        yield
    finally:
        for param, data in saved:
            param.data = data


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


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
        lowered = _autocast_dtype(x.device)
        if lowered is not None and not torch.is_grad_enabled():
            with lowered_weights(self, lowered):
                return self._forward(x, with_neck)
        return self._forward(x, with_neck)

    def _forward(self, x: Tensor, with_neck: bool) -> tuple[Tensor | None, list[Tensor]]:
        workers = self._image_workers(x)
        if workers == 1:
            return self._forward_images(x, with_neck)
        n, (e, p, g) = (
            x.shape[0],
            (self.config.embed_dim, self.config.out_chans, self.config.grid_size),
        )
        branches = [x.new_empty(n, e, g, g) for _ in self.config.global_attn_indexes]
        neck = x.new_empty(n, p, g, g) if with_neck else None

        def encode(items: slice) -> None:
            part_neck, part_branches = self._forward_images(x[items], with_neck)
            for out, part in zip(branches, part_branches, strict=True):
                out[items] = part
            if neck is not None:
                neck[items] = part_neck

        run_split(n, workers, encode)
        return neck, branches

    def _image_workers(self, x: Tensor) -> int:
        """Parallel image workers for this batch: only on the CPU, without autograd."""
        if x.device.type != "cpu" or torch.is_grad_enabled() or not image_parallel_enabled():
            return 1
        return plan_workers(x.shape[0], torch.get_num_threads())

    def _forward_images(self, x: Tensor, with_neck: bool) -> tuple[Tensor | None, list[Tensor]]:
        x = (self.patch_embed(x) + self.pos_embed).contiguous()
        in_place = not torch.is_grad_enabled()
        branches = []
        for i, block in enumerate(self.blocks):
            x = block.forward_(x) if in_place else block(x)
            if i in self.config.global_attn_indexes:
                # NHWC -> NCHW copy: the in-place blocks that follow must not alter it
                branches.append(
                    x.permute(0, 3, 1, 2).contiguous() if in_place else x.permute(0, 3, 1, 2)
                )
        neck = self.neck(x.permute(0, 3, 1, 2)) if with_neck else None
        return neck, branches
