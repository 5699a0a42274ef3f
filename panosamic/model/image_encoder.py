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

Lower precisions (``forward`` under autocast, or ``int8=True``):

* bfloat16 on a CPU with AMX: the attention reads q, k and v straight out of
  the q/k/v projection (no copies) and runs SDPA's fused bfloat16 kernel with
  the bias as its mask, in larger chunks; on other CPUs it runs as bfloat16
  batched matrix products (their SDPA computes bfloat16 in float32);
* int8: the linear layers chosen by :attr:`ImageEncoderViT.int8_layers` run
  as int8 products (:mod:`panosamic.model.int8`), everything else in bfloat16.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.cpu_parallel import image_parallel_enabled, plan_workers, run_split
from .config import DEFAULT_INT8_LAYERS, EncoderConfig
from .int8 import Int8Linears

# Elements of relative-position bias per SDPA call: on a CPU small enough for the L3
# cache; on an accelerator large enough to keep the kernels busy.
_BIAS_CHUNK_ELEMENTS = {"cpu": 1024 * 1024}
_BIAS_CHUNK_ELEMENTS_ACCELERATOR = 64 * 1024 * 1024
# bfloat16 with SDPA's fused kernel on a CPU: larger chunks pay (fewer calls, same cache use).
_BIAS_CHUNK_ELEMENTS_SDPA_CPU = 4 * 1024 * 1024
# Tokens per chunk for q/k/v projection + attention and for the MLP (bounds peak memory).
_TOKEN_CHUNK = 4096
# MLP chunk for bfloat16 / int8 on a CPU: the hidden layer stays small enough to be reused
# by the allocator instead of page-faulted in afresh (float32 keeps its measured order).
_MLP_CHUNK_LOWERED_CPU = 1024


# How a block applies one of its frozen linear layers: (layer, x, gelu=False, add_to=None)
# -> layer(x), GELU'd if gelu, added in place into add_to if given (then add_to).
LinearFn = Callable[..., Tensor]


def dense_linear(
    layer: nn.Linear, x: Tensor, gelu: bool = False, add_to: Tensor | None = None
) -> Tensor:
    """``layer(x)`` with the layer's own weights (float32, or bfloat16 when lowered)."""
    out = F.linear(x, layer.weight, layer.bias)
    out = F.gelu(out) if gelu else out
    return out if add_to is None else add_to.add_(out)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc only; else nothing).

    The encoder's many mid-sized temporaries stay in the heap after they are
    freed (glibc keeps them for reuse), so the resident memory after the
    encoder would stay at its peak through the fusion and the decoder.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _cpu_has_amx_bf16() -> bool:
    try:
        return bool(torch.cpu.get_capabilities().get("amx_bf16", False))
    except (AttributeError, RuntimeError):
        return False


_AMX_BF16 = _cpu_has_amx_bf16()  # once: a constant for torch.compile, too


def _strided_sdpa(qkv: Tensor) -> bool:
    """bfloat16 on a CPU whose SDPA kernel computes in bfloat16 (AMX tiles)."""
    return qkv.device.type == "cpu" and qkv.dtype == torch.bfloat16 and _AMX_BF16


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

    def add_to_(self, x: Tensor, normed: Tensor, linear: LinearFn = dense_linear) -> None:
        """x += mlp(normed), token chunk by token chunk (inference only); (..., dim) each."""
        flat_x, flat_n = x.view(-1, x.shape[-1]), normed.view(-1, normed.shape[-1])
        lowered = linear is not dense_linear or self.lin1.weight.dtype != torch.float32
        chunk = _MLP_CHUNK_LOWERED_CPU if lowered and x.device.type == "cpu" else _TOKEN_CHUNK
        for start in range(0, flat_x.shape[0], chunk):
            part = slice(start, start + chunk)
            hidden = linear(self.lin1, flat_n[part], gelu=True)
            linear(self.lin2, hidden, add_to=flat_x[part])


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


def rel_pos_expander(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(h + w, h * w) 0/1 matrix E with [bias_h, bias_w] @ E = B row by row.

    For one query, B[(k, l)] = bias_h[k] + bias_w[l]: row k of E's first h rows
    selects the keys of key row k, row l of its last w rows those of key column
    l. Each output sums exactly two terms, so the product is exact; as one
    matrix product it beats a broadcast add whose inner loop is only w long.
    """
    keys = torch.arange(h * w, device=device)
    rows = torch.cat([keys // w, h + keys % w])
    e = torch.zeros(h + w, h * w, dtype=dtype, device=device)
    e[rows, torch.cat([keys, keys])] = 1
    return e


def attention_heads_with_rel_pos(
    q: Tensor, k: Tensor, v: Tensor, rel_h: Tensor, rel_w: Tensor, hw: tuple[int, int]
) -> Tensor:
    """softmax(q k^T / sqrt(d) + B) v with SAM's decomposed bias B, by SDPA on strided views.

    q, k, v: (b, heads, N, d) views of any strides (for example straight out of
    the q/k/v projection), N = h * w; rel_h (h, h, d), rel_w (w, w, d). Returns
    (b, N, heads, d), contiguous. B is built per chunk of (images, heads, query
    rows) by :func:`rel_pos_expander` and passed to SDPA as its additive mask.
    """
    b, heads, tokens, d = q.shape
    h, w = hw
    budget = _BIAS_CHUNK_ELEMENTS_SDPA_CPU
    per_head = tokens * tokens
    if heads * per_head <= budget:  # whole heads, several images at a time
        images, group, rows = max(1, min(b, budget // (heads * per_head))), heads, h
    elif per_head <= budget:  # whole heads, a few at a time
        images, group, rows = 1, budget // per_head, h
    else:  # query rows of one head at a time
        images, group, rows = 1, 1, max(1, min(h, budget // (w * tokens)))
    grid_q = q.reshape(b, heads, h, w, d)
    factors = torch.cat(
        [
            torch.einsum("bahwd,hkd->bahwk", grid_q, rel_h),  # (b, heads, h, w, h)
            torch.einsum("bahwd,wkd->bahwk", grid_q, rel_w),  # (b, heads, h, w, w)
        ],
        dim=-1,
    ).view(b, heads, tokens, h + w)
    expander = rel_pos_expander(h, w, q.dtype, q.device)
    out = q.new_empty(b, tokens, heads, d)
    buffer = q.new_empty(images, group, rows * w, tokens)  # one chunk of B, reused
    for i0 in range(0, b, images):
        im = slice(i0, i0 + images)
        for a0 in range(0, heads, group):
            hs = slice(a0, a0 + group)
            for r0 in range(0, h, rows):
                queries = slice(r0 * w, min(h, r0 + rows) * w)
                qc = q[im, hs, queries]
                n, g, length = qc.shape[:3]
                mask = buffer[:n, :g, :length]
                torch.matmul(factors[im, hs, queries], expander, out=mask)
                chunk = F.scaled_dot_product_attention(qc, k[im, hs], v[im, hs], attn_mask=mask)
                out[im, queries, hs] = chunk.transpose(1, 2)
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
        if _strided_sdpa(qkv):
            views = qkv.view(b, h * w, 3, heads, d).unbind(2)  # 3 x (b, N, heads, d)
            q, k, v = (p.transpose(1, 2) for p in views)  # (b, heads, N, d) views
            rel_h = relative_position_table(h, self.rel_pos_h).to(qkv.dtype)
            rel_w = relative_position_table(w, self.rel_pos_w).to(qkv.dtype)
            out = attention_heads_with_rel_pos(q, k, v, rel_h, rel_w, (h, w))
            return out.view(b, h, w, heads * d)
        parts = qkv.reshape(b, h * w, 3, heads, d).permute(2, 0, 3, 1, 4)  # (3, b, heads, N, d)
        q, k, v = (p.reshape(b * heads, h * w, d) for p in parts.unbind(0))
        rel_h = relative_position_table(h, self.rel_pos_h)
        rel_w = relative_position_table(w, self.rel_pos_w)
        out = attention_with_rel_pos(q, k, v, rel_h, rel_w, (h, w))
        return out.view(b, heads, h, w, d).permute(0, 2, 3, 1, 4).reshape(b, h, w, heads * d)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, dim) -> (B, H, W, dim)."""
        return self.proj(self.core(self.qkv(x)))


def _window_spans(size: int, window: int) -> list[tuple[slice, slice, int, int]]:
    """``size`` tokens cut at whole windows: (token slice, window slice, windows, tokens each)."""
    full, rest = divmod(size, window)
    spans = [(slice(0, full * window), slice(0, full), full, window)] if full else []
    if rest:
        spans.append((slice(full * window, size), slice(full, full + 1), 1, rest))
    return spans


def _window_grid(windows: Tensor, b: int, nh: int, nw: int) -> Tensor:
    """(b * nh * nw, k, k, C) windows viewed as (b, nh, k, nw, k, C): row, column order."""
    k = windows.shape[1]
    return windows.view(b, nh, nw, k, k, windows.shape[-1]).permute(0, 1, 3, 2, 4, 5)


def window_partition(x: Tensor, window: int, pad_value: Tensor | None = None) -> Tensor:
    """(B, H, W, C) -> (B * nW, window, window, C), padding H and W up to whole windows.

    The padding is zero, or the vector ``pad_value`` (C,) when given. The tokens
    are copied once, straight into their windows (a few rectangular copies).
    """
    b, h, w, c = x.shape
    nh, nw = -(-h // window), -(-w // window)
    windows = x.new_empty(b * nh * nw, window, window, c)
    grid = _window_grid(windows, b, nh, nw)
    pad = x.new_zeros(c) if pad_value is None else pad_value
    if h % window:  # the rows below the image, in the last row of windows
        grid[:, -1, h % window :].copy_(pad.expand_as(grid[:, -1, h % window :]))
    if w % window:  # the columns right of the image, in the last column of windows
        grid[:, :, :, -1, w % window :].copy_(pad.expand_as(grid[:, :, :, -1, w % window :]))
    for rows, win_rows, nr, tr in _window_spans(h, window):
        for cols, win_cols, nc, tc in _window_spans(w, window):
            tokens = x[:, rows, cols].view(b, nr, tr, nc, tc, c)
            grid[:, win_rows, :tr, win_cols, :tc].copy_(tokens)
    return windows


def window_unpartition(x: Tensor, window: int, hw: tuple[int, int]) -> Tensor:
    """Inverse of :func:`window_partition`, dropping the padding: (B, H, W, C), contiguous."""
    h, w = hw
    nh, nw = -(-h // window), -(-w // window)
    b, c = x.shape[0] // (nh * nw), x.shape[-1]
    out = x.new_empty(b, h, w, c)
    grid = _window_grid(x, b, nh, nw)
    for rows, win_rows, nr, tr in _window_spans(h, window):
        for cols, win_cols, nc, tc in _window_spans(w, window):
            out[:, rows, cols].view(b, nr, tr, nc, tc, c).copy_(
                grid[:, win_rows, :tr, win_cols, :tc]
            )
    return out


class Block(nn.Module):
    """Transformer block: windowed attention (window > 0) or global attention (window 0)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window: int, grid: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, grid=window if window > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))

    def attention(
        self, normed: Tensor, linear: LinearFn = dense_linear, add_to: Tensor | None = None
    ) -> Tensor:
        """Attention output of the normed tokens, (B, H, W, dim), projections on real tokens
        only; added into ``add_to`` (the residual tokens) when given, which is returned."""
        attn = self.attn
        qkv = linear(attn.qkv, normed)
        if self.window > 0:
            hw = (normed.shape[1], normed.shape[2])
            # A padding token is zero after norm1, so its projection is the bias.
            pad = attn.qkv.bias.to(qkv.dtype)
            windows = window_partition(qkv, self.window, pad_value=pad)
            out = window_unpartition(attn.core(windows), self.window, hw)
        else:
            out = attn.core(qkv)
        return linear(attn.proj, out, add_to=add_to)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def forward_(self, x: Tensor, linear: LinearFn = dense_linear) -> Tensor:
        """In-place forward for inference: updates and returns ``x`` (B, H, W, dim), a few
        images at a time; ``linear`` applies the linear layers (dense, or int8)."""
        group = max(1, _TOKEN_CHUNK // (x.shape[1] * x.shape[2]))
        for start in range(0, x.shape[0], group):
            part = x[start : start + group]
            self.attention(self.norm1(part), linear, add_to=part)
            self.mlp.add_to_(part, self.norm2(part), linear)
        return x


@contextmanager
def lowered_weights(
    module: nn.Module, dtype: torch.dtype, skip: Collection[int] = ()
) -> Iterator[None]:
    """Hold the matmul weights (linear, conv, relative positions) in ``dtype`` meanwhile.

    Under autocast a float32 weight is cast again at every call; casting each
    once per forward saves that traffic. LayerNorms and the absolute position
    embedding stay in float32, and so does the residual stream. Submodules
    whose ``id`` is in ``skip`` (the int8 layers) keep their weights.
    """
    saved = []
    for sub in module.modules():
        if id(sub) in skip:
            continue
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

    ``int8_layers`` chooses the linear layers that ``forward(..., int8=True)``
    runs as int8 products; their int8 weights are made at the first such call
    and kept until a weight changes.
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
        self.int8_layers = DEFAULT_INT8_LAYERS
        self._int8: Int8Linears | None = None

    def forward(
        self, x: Tensor, with_neck: bool = True, int8: bool = False
    ) -> tuple[Tensor | None, list[Tensor]]:
        """(N, 3, S, S) -> (neck (N, P, G, G) or None, [branch (N, E, G, G)] * B).

        ``int8``: the layers of :attr:`int8_layers` as int8 products and the rest
        in bfloat16 (CPU, without autograd).
        """
        if int8:
            linear = self._int8_linears(x)
            with (
                torch.autocast("cpu", dtype=torch.bfloat16),
                lowered_weights(self, torch.bfloat16, skip=linear.quantized_layers()),
            ):
                out = self._forward(x, with_neck, linear, torch.bfloat16)
        else:
            lowered = _autocast_dtype(x.device)
            if lowered is not None and not torch.is_grad_enabled():
                # bfloat16 branches: half the memory, and the fusion reads them under autocast
                branch_dtype = torch.bfloat16 if lowered == torch.bfloat16 else x.dtype
                with lowered_weights(self, lowered):
                    out = self._forward(x, with_neck, dense_linear, branch_dtype)
            else:
                out = self._forward(x, with_neck, dense_linear, x.dtype)
        if x.device.type == "cpu" and not torch.is_grad_enabled():
            release_free_memory()
        return out

    def _int8_linears(self, x: Tensor) -> Int8Linears:
        """The int8 layers, (re)made where a weight changed; checks that int8 can run here."""
        if x.device.type != "cpu":
            raise ValueError(
                f"precision 'int8' runs on CPUs only, this input is on {x.device}; "
                "use precision 'bf16' (or 'fp16') on accelerators"
            )
        if torch.is_grad_enabled():
            raise ValueError("precision 'int8' is for inference: call the encoder without autograd")
        if self._int8 is None or self._int8.selection != self.int8_layers:
            self._int8 = Int8Linears(self.int8_layers)
        layers = ((n, m) for n, m in self.named_modules() if isinstance(m, nn.Linear))
        self._int8.refresh(layers)
        return self._int8

    def _forward(
        self, x: Tensor, with_neck: bool, linear: LinearFn, branch_dtype: torch.dtype
    ) -> tuple[Tensor | None, list[Tensor]]:
        if torch.is_grad_enabled():  # autograd: the branches are views of the token maps
            return self._forward_images(x, with_neck, linear)
        n, (e, p, g) = (
            x.shape[0],
            (self.config.embed_dim, self.config.out_chans, self.config.grid_size),
        )
        branches = [
            x.new_empty(n, e, g, g, dtype=branch_dtype) for _ in self.config.global_attn_indexes
        ]
        workers = self._image_workers(x)
        if workers == 1:
            neck, _ = self._forward_images(x, with_neck, linear, branches)
            return neck, branches
        neck = x.new_empty(n, p, g, g) if with_neck else None

        def encode(items: slice) -> None:
            # each branch goes straight into its slice of the output: no second copy
            out = [branch[items] for branch in branches]
            part_neck, _ = self._forward_images(x[items], with_neck, linear, out)
            if neck is not None:
                neck[items] = part_neck

        run_split(n, workers, encode)
        return neck, branches

    def _image_workers(self, x: Tensor) -> int:
        """Parallel image workers for this batch: only on the CPU, without autograd."""
        if x.device.type != "cpu" or torch.is_grad_enabled() or not image_parallel_enabled():
            return 1
        return plan_workers(x.shape[0], torch.get_num_threads())

    def _forward_images(
        self, x: Tensor, with_neck: bool, linear: LinearFn, out: list[Tensor] | None = None
    ) -> tuple[Tensor | None, list[Tensor]]:
        """Patch embedding, blocks, neck; ``out`` (B x (n, E, G, G)) receives the branches
        when given (inference only)."""
        x = (self.patch_embed(x) + self.pos_embed).contiguous()
        in_place = not torch.is_grad_enabled()
        branches: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block.forward_(x, linear) if in_place else block(x)
            if i in self.config.global_attn_indexes:
                nchw = x.permute(0, 3, 1, 2)
                if not in_place:
                    branches.append(nchw)
                elif out is not None:  # NHWC -> NCHW copy, as the blocks go on in place
                    branches.append(out[len(branches)].copy_(nchw))
                else:
                    branches.append(nchw.contiguous())
        neck = self.neck(x.permute(0, 3, 1, 2)) if with_neck else None
        return neck, branches
