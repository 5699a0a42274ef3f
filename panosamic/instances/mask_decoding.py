"""The parts of SAM's mask decoder that both ways of computing it share.

SAM's :class:`~segment_anything.modeling.MaskDecoder` turns the tokens of a
point prompt (IoU token, mask tokens, the point) and one image embedding into
predicted IoUs and low-resolution mask logits. :mod:`.exact_decoder` computes
its two-way transformer in SAM's own operation order, :mod:`.factored_decoder`
with the image-side attention factored; both use the pieces here: the prompt
tokens, SAM's attention, the prediction heads and the mask upscaling.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class DecodedPrompts:
    """The transformer's output for a batch of B prompts.

    ``image``: the (B, N, C) image tokens (N = h * w) as consecutive chunks
    of prompts; ``hyper_in``: (B, num_mask_tokens, C / 8) hypernetwork outputs of the mask
    tokens; ``iou``: (B, num_mask_tokens) predicted IoUs of every mask token
    (multimask slicing is the caller's).
    """

    image: list[Tensor]
    hyper_in: Tensor
    iou: Tensor

    def image_tokens(self, index: Tensor) -> Tensor:
        """(len(index), N, C) image tokens of the prompts ``index``."""
        starts = [0]
        for chunk in self.image:
            starts.append(starts[-1] + chunk.shape[0])
        first, last = int(index[0]), int(index[-1])
        j = bisect_right(starts, first) - 1
        if last - first == len(index) - 1 and last < starts[j + 1]:
            # consecutive prompts of one chunk: a view, laid out as a copy would be
            return self.image[j][first - starts[j] : last + 1 - starts[j]]
        rows = []
        for i in index.tolist():
            j = bisect_right(starts, i) - 1
            rows.append(self.image[j][i - starts[j]])
        return torch.stack(rows)


def _separate_heads(x: Tensor, num_heads: int) -> Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)


def sam_attention_heads(num_heads: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """SAM's ``Attention.forward`` between the projections: (B, n, Ci) each -> (B, n_q, Ci).

    SAM divides the (B, heads, n_q, n_k) weights by sqrt(head dim). When that is
    a power of two the division is exact, and it is done on the smaller of q
    and k instead: the same numbers, one big pass less.
    """
    q = _separate_heads(q, num_heads)
    k = _separate_heads(k, num_heads)
    v = _separate_heads(v, num_heads)
    scale = math.sqrt(q.shape[-1])
    if math.frexp(scale)[0] == 0.5:  # a power of two
        if q.shape[-2] <= k.shape[-2]:
            weights = (q / scale) @ k.permute(0, 1, 3, 2)
        else:
            weights = q @ (k / scale).permute(0, 1, 3, 2)
    else:
        weights = (q @ k.permute(0, 1, 3, 2)) / scale
    weights = torch.softmax(weights, dim=-1)
    out = weights @ v
    b, heads, n, c = out.shape
    return out.transpose(1, 2).reshape(b, n, heads * c)


def sam_attention(attn: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """SAM's ``Attention.forward``."""
    heads = sam_attention_heads(attn.num_heads, attn.q_proj(q), attn.k_proj(k), attn.v_proj(v))
    return attn.out_proj(heads)


def prompt_tokens(mask_decoder: nn.Module, sparse: Tensor) -> Tensor:
    """(B, T, C) the transformer's tokens: IoU token, mask tokens, then the (B, P, C) prompts."""
    tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    return torch.cat((tokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse), dim=1)


def prediction_heads(mask_decoder: nn.Module, queries: Tensor) -> tuple[Tensor, Tensor]:
    """(B, T, C) final tokens -> (B, K, C / 8) hypernetwork outputs, (B, K) predicted IoUs."""
    iou = mask_decoder.iou_prediction_head(queries[:, 0, :])
    mask_tokens = queries[:, 1 : 1 + mask_decoder.num_mask_tokens, :]
    mlps = mask_decoder.output_hypernetworks_mlps
    hyper_in = torch.stack([mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(mlps)], dim=1)
    return hyper_in, iou


def prompt_slices(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def step_slices(n: int, size: int) -> list[slice]:
    """Slices of about ``size`` prompts for the image-side steps, none of a single prompt.

    A single prompt takes other kernels in a few places (its batch dimension
    of one changes how tensors are folded), so it would not match the batch
    SAM runs it in; a lone last prompt joins the previous step instead.
    """
    slices = list(prompt_slices(n, max(2, size)))
    if len(slices) > 1 and slices[-1].stop - slices[-1].start == 1:
        slices[-2:] = [slice(slices[-2].start, n)]
    return slices


def _sam_upscaling_parts(upscaling: nn.Sequential) -> list[nn.Module] | None:
    """The five modules of SAM's ``output_upscaling``, or None for another layout."""
    from segment_anything.modeling.common import LayerNorm2d

    parts = list(upscaling)
    expected = (nn.ConvTranspose2d, LayerNorm2d, nn.GELU, nn.ConvTranspose2d, nn.GELU)
    if len(parts) != 5 or not all(isinstance(m, t) for m, t in zip(parts, expected, strict=True)):
        return None
    if parts[2].approximate != "none" or parts[4].approximate != "none":
        return None
    return parts


def upscaling_factor(upscaling: nn.Sequential) -> int | None:
    """How many mask pixels per image token and axis SAM's upscaling makes (4), when every
    output pixel depends on one token only (kernel == stride); None otherwise."""
    parts = _sam_upscaling_parts(upscaling)
    if parts is None:
        return None
    factor = 1
    for conv in (parts[0], parts[3]):
        k, stride = conv.kernel_size, conv.stride
        if k[0] != k[1] or stride != k or conv.padding != (0, 0) or conv.output_padding != (0, 0):
            return None
        factor *= k[0]
    return factor


def mask_side(mask_decoder: nn.Module, h: int, w: int) -> int | None:
    """Side of the square low-resolution masks of an (h, w) embedding, where they can be
    cropped (:func:`upscale_to_masks`); None when they cannot."""
    factor = upscaling_factor(mask_decoder.output_upscaling)
    return None if factor is None or h != w else factor * h


def upscale(upscaling: nn.Sequential, x: Tensor) -> Tensor:
    """SAM's ``output_upscaling`` (ConvT, LayerNorm2d, GELU, ConvT, GELU) with fewer passes.

    LayerNorm2d computes ``x - mean`` twice and every step out of place; here
    it is computed once and normalised in place (the same operations on the
    same numbers). Any other layout of the module runs as it is.
    """
    parts = _sam_upscaling_parts(upscaling)
    if parts is None:
        return upscaling(x)
    conv1, norm, _, conv2, _ = parts
    x = conv1(x)
    centred = x - x.mean(1, keepdim=True)
    del x
    variance = centred.pow(2).mean(1, keepdim=True)
    centred.div_(torch.sqrt(variance + norm.eps))
    centred.mul_(norm.weight[:, None, None]).add_(norm.bias[:, None, None])
    torch.ops.aten.gelu_(centred)
    x = conv2(centred)
    del centred
    torch.ops.aten.gelu_(x)
    return x


def token_region(
    mask_decoder: nn.Module, shape: tuple[int, int, int], needed: tuple[int, int] | None
) -> tuple[int, int]:
    """Image-token rows and columns that the low-resolution mask pixels ``needed`` come from."""
    _, h, w = shape
    factor = upscaling_factor(mask_decoder.output_upscaling)
    if needed is None or factor is None:
        return h, w
    rows, cols = needed
    return min(h, -(-rows // factor)), min(w, -(-cols // factor))


def upscale_to_masks(
    mask_decoder: nn.Module,
    image: Tensor,
    hyper_in: Tensor,
    shape: tuple[int, int, int],
    needed: tuple[int, int] | None = None,
) -> Tensor:
    """SAM's mask head: (b, N, C) final image tokens and (b, K, C / 8) hypernetwork
    outputs -> (b, K, 4h, 4w) low-resolution mask logits.

    ``needed``: (rows, cols) of the masks that are used (their top-left
    corner). Only the image tokens those rows and columns come from are
    upscaled, so the masks are cropped to whole tokens (4 x 4 pixels)
    covering them; the kept pixels equal the full computation bit for bit
    (each upscaled pixel depends on one image token).
    """
    c, h, w = shape
    th, tw = token_region(mask_decoder, shape, needed)
    b = image.shape[0]
    # a view of the crop: the convolutions see the full tensor's strides
    tokens = image.transpose(1, 2).view(b, c, h, w)[:, :, :th, :tw]
    upscaled = upscale(mask_decoder.output_upscaling, tokens)
    _, c2, uh, uw = upscaled.shape
    logits = hyper_in @ upscaled.reshape(b, c2, uh * uw)
    return logits.view(b, -1, uh, uw)


def empty_masks(
    mask_decoder: nn.Module,
    hyper_in: Tensor,
    shape: tuple[int, int, int],
    needed: tuple[int, int] | None = None,
) -> Tensor:
    """The (0, K, 4h', 4w') result of :func:`upscale_to_masks` for no prompt."""
    th, tw = token_region(mask_decoder, shape, needed)
    f = upscaling_factor(mask_decoder.output_upscaling) or 4
    return hyper_in.new_empty(0, mask_decoder.num_mask_tokens, f * th, f * tw)
