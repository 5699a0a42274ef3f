"""SAM's mask decoder for point prompts, with the image-side attention factored.

In SAM's two-way transformer every prompt has only T = 7 tokens (IoU token,
4 mask tokens, the point and the padding point), while the image side has
N = 4096 tokens of width C = 256. SAM projects all N image tokens to the
attention width for every prompt: seven N x 256 x 128 products per prompt.
Attention is linear in those projections, so the same quantities follow from
a few token-side vectors. Per head h (width d):

- token-to-image logits ``q_h . (Wk_h x_n + bk_h)`` are ``(Wk_h^T q_h) . x_n``
  plus a constant per token, which the softmax over n removes, and the
  output ``sum_n a_n (Wv_h x_n + bv_h)`` is ``Wv_h (sum_n a_n x_n) + bv_h``;
- image-to-token logits ``(Wq_h x_n + bq_h) . k_h`` are ``x_n . (Wq_h^T k_h) +
  bq_h . k_h``, and the output projection of ``sum_t a_t v_t`` is
  ``sum_t a_t (Wo_h v_t)``.

So each block multiplies the image tokens with H x T = 56 vectors instead of
projecting them to 128 channels: 2.3 times fewer multiply-adds and no
N x 128 intermediates; the softmax over the 7 tokens runs with the image
tokens as its (vectorised) inner axis. Every prompt is independent, so a few
prompts at a time go through the whole transformer, in buffers that are
allocated once per embedding (fresh 16 MiB tensors cost more in page faults
than the arithmetic on them).

The result equals SAM's up to float32 round-off (about 1e-6 relative, the
size of the difference between two encoder implementations); the masks are
SAM's (``tests/test_instances_decoder.py``, ``tests/test_instances_paths.py``).
:class:`~.exact_decoder.ExactMaskDecoder` keeps SAM's operation order bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .mask_decoding import (
    DecodedPrompts,
    empty_masks,
    mask_side,
    prediction_heads,
    prompt_tokens,
    sam_attention,
    step_slices,
    upscale_to_masks,
)
from .workspace import Workspace

FACTORED_STEP = 2  # prompts per pass through the transformer (their image side fits the L3 cache)


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, H d) -> (B, H, T, d)."""
    b, t, c = x.shape
    return x.view(b, t, heads, c // heads).transpose(1, 2)


def _heads_last(x: Tensor, heads: int) -> Tensor:
    """(B, N, H d) -> (B, H, d, N) contiguous."""
    return _split_heads(x, heads).transpose(2, 3).contiguous()


def _merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, d) -> (B, T, H d)."""
    b, heads, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, heads * d)


class FactoredMaskDecoder:
    """SAM's mask decoder applied to point prompts on one image embedding, factored.

    The interface of :class:`~.exact_decoder.ExactMaskDecoder`: :meth:`run_transformer`
    then :meth:`masks`. The image tokens in the returned :class:`DecodedPrompts`
    live in this decoder's buffers and are valid until the next :meth:`run_transformer`.

    Args:
        mask_decoder: SAM's ``MaskDecoder`` (its modules and weights are used as they are).
        image_embedding: (1, C, h, w) the encoder neck of one image / view / modality.
        image_pe: (1, C, h, w) the prompt encoder's dense positional encoding.
        dense_embedding: (1, C, h, w) the prompt encoder's "no mask" embedding.
        step: prompts per pass through the transformer (speed and memory only).
    """

    def __init__(
        self,
        mask_decoder: nn.Module,
        image_embedding: Tensor,
        image_pe: Tensor,
        dense_embedding: Tensor,
        step: int = FACTORED_STEP,
    ) -> None:
        self.decoder = mask_decoder
        self.transformer = mask_decoder.transformer
        first = self.transformer.layers[0]
        _, c, h, w = image_embedding.shape
        self.shape = (c, h, w)
        self.step = max(1, step)
        self.mask_side = mask_side(mask_decoder, h, w)
        # (1, N, C) row-major image tokens and positional encoding
        self.keys = (image_embedding + dense_embedding).flatten(2).transpose(1, 2).contiguous()
        self.key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        keys_pe = self.keys + self.key_pe
        # the first block's image side is the same for every prompt: its projections, per head
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        # (1, H, d, N) keys and queries, (1, H, N, d) values
        self.first_t2i_k = _heads_last(t2i.k_proj(keys_pe), t2i.num_heads)
        self.first_t2i_v = _split_heads(t2i.v_proj(self.keys), t2i.num_heads).contiguous()
        self.first_i2t_q = _heads_last(i2t.q_proj(keys_pe), i2t.num_heads)
        self.work = Workspace(image_embedding)

    # ------------------------------------------------------------ transformer
    def run_transformer(self, sparse: Tensor) -> DecodedPrompts:
        """Two-way transformer, IoU head and hypernetworks for (B, P, C) sparse embeddings."""
        b = sparse.shape[0]
        c, h, w = self.shape
        image = self.work.get("image_tokens", (b, h * w, c))
        point_pe = prompt_tokens(self.decoder, sparse)
        queries = torch.empty_like(point_pe)
        for sl in step_slices(b, self.step):
            queries[sl] = self._transformer(point_pe[sl], image[sl])
        return DecodedPrompts([image], *prediction_heads(self.decoder, queries))

    def _transformer(self, point_pe: Tensor, out: Tensor) -> Tensor:
        """The two-way transformer on (n, T, C) prompt tokens: their final tokens;
        the final image tokens (n, N, C) go to ``out``."""
        layers = self.transformer.layers
        size = (point_pe.shape[0], *self.keys.shape[1:])
        queries = point_pe
        image = None  # (tokens, tokens + PE) of these prompts; None while the embedding's
        for i, layer in enumerate(layers):
            queries = self._self_attention(layer, queries, point_pe)
            attn_out = self._token_to_image(
                layer.cross_attn_token_to_image, queries + point_pe, image
            )
            queries = layer.norm2(queries + attn_out)
            queries = layer.norm3(queries + layer.mlp(queries))
            target = out if i == len(layers) - 1 else self.work.get(f"keys{i % 2}", size)
            keys = self._image_to_token(layer, queries, point_pe, image, target)
            image = keys, torch.add(keys, self.key_pe, out=self.work.get("keys_pe", size))
        final = self.transformer.final_attn_token_to_image
        attn_out = self._token_to_image(final, queries + point_pe, image)
        return self.transformer.norm_final_attn(queries + attn_out)

    @staticmethod
    def _self_attention(layer: nn.Module, queries: Tensor, query_pe: Tensor) -> Tensor:
        if layer.skip_first_layer_pe:
            return layer.norm1(sam_attention(layer.self_attn, queries, queries, queries))
        q = queries + query_pe
        return layer.norm1(queries + sam_attention(layer.self_attn, q, q, queries))

    def _token_to_image(
        self, attn: nn.Module, q: Tensor, image: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        """Tokens (n, T, C) attend to their prompts' image tokens: ``image`` = (tokens,
        tokens + PE), each (n, N, C), factored; None: the embedding's, projected once."""
        n, t, c = q.shape
        heads = attn.num_heads
        d = attn.internal_dim // heads
        n_img = self.keys.shape[1]
        query = _split_heads(attn.q_proj(q), heads) / math.sqrt(d)  # (n, H, T, d)
        logits = self.work.get("logits", (n, heads, t, n_img))
        if image is None:
            torch.matmul(query, self.first_t2i_k, out=logits)
        else:
            keys, keys_pe = image
            g = (query @ attn.k_proj.weight.view(heads, d, c)).view(n, heads * t, c)
            torch.bmm(g, keys_pe.transpose(1, 2), out=logits.view(n, heads * t, n_img))
        weights = torch.ops.aten._softmax.out(
            logits, -1, False, out=self.work.get("weights", logits.shape)
        )
        if image is None:
            return attn.out_proj(_merge_heads(weights @ self.first_t2i_v))
        # attention-weighted image tokens, then their value projection
        pooled = (weights.view(n, heads * t, n_img) @ keys).view(n, heads, t, c)
        values = pooled @ attn.v_proj.weight.view(heads, d, c).transpose(1, 2)
        values = values + attn.v_proj.bias.view(heads, 1, d)
        return attn.out_proj(_merge_heads(values))

    def _image_to_token(
        self,
        layer: nn.Module,
        queries: Tensor,
        query_pe: Tensor,
        image: tuple[Tensor, Tensor] | None,
        out: Tensor,
    ) -> Tensor:
        """Image-to-token attention and norm4 of one block, factored: the new image tokens
        in ``out``. ``image``: (tokens, tokens + PE), each (n, N, C); None in the first block."""
        attn = layer.cross_attn_image_to_token
        n, t, c = queries.shape
        heads = attn.num_heads
        d = attn.internal_dim // heads
        n_img = self.keys.shape[1]
        key = _split_heads(attn.k_proj(queries + query_pe), heads) / math.sqrt(d)  # (n, H, T, d)
        value = _split_heads(attn.v_proj(queries), heads)
        out_w = attn.out_proj.weight.view(c, heads, d).permute(1, 2, 0)  # (H, d, C)
        mixed = (value @ out_w).reshape(n, heads * t, c)  # each token's output, per head
        logits = self.work.get("logits", (n, heads, t, n_img))
        if image is None:
            base = self.keys
            torch.matmul(key, self.first_i2t_q, out=logits)
        else:
            base, base_pe = image
            logit_w = (key @ attn.q_proj.weight.view(heads, d, c)).view(n, heads * t, c)
            logit_b = (key @ attn.q_proj.bias.view(heads, d, 1)).view(n, heads * t, 1)
            torch.baddbmm(
                logit_b, logit_w, base_pe.transpose(1, 2), out=logits.view(n, heads * t, n_img)
            )
        weights = torch.ops.aten._softmax.out(
            logits, 2, False, out=self.work.get("weights", logits.shape)
        )
        update = self.work.get("update", out.shape)
        torch.baddbmm(
            attn.out_proj.bias, weights.view(n, heads * t, n_img).transpose(1, 2), mixed, out=update
        )
        update += base
        norm = layer.norm4
        stats = self.work.get("mean", (n, n_img, 1)), self.work.get("rstd", (n, n_img, 1))
        torch.ops.aten.native_layer_norm.out(
            update,
            norm.normalized_shape,
            norm.weight,
            norm.bias,
            norm.eps,
            out0=out,
            out1=stats[0],
            out2=stats[1],
        )
        return out

    # ---------------------------------------------------------------- masks
    def masks(
        self, decoded: DecodedPrompts, index: Tensor, needed: tuple[int, int] | None = None
    ) -> Tensor:
        """Low-resolution mask logits of the prompts ``index``, as
        :meth:`ExactMaskDecoder.masks <.exact_decoder.ExactMaskDecoder.masks>`."""
        (image,) = decoded.image
        chunks = []
        for sl in step_slices(len(index), self.step):
            idx = index[sl]
            tokens = self.work.get("mask_tokens", (len(idx), *image.shape[1:]))
            torch.index_select(image, 0, idx, out=tokens)
            chunks.append(
                upscale_to_masks(self.decoder, tokens, decoded.hyper_in[idx], self.shape, needed)
            )
        if not chunks:
            return empty_masks(self.decoder, decoded.hyper_in, self.shape, needed)
        return torch.cat(chunks)
