"""SAM's mask decoder in SAM's own operation order, for a grid of point prompts on one embedding.

SAM's :class:`~segment_anything.modeling.MaskDecoder` copies the image
embedding once per prompt and runs every step on the whole batch of prompts,
so a batch of 64 prompts on a ViT encoder moves tensors of 64 x 4096 x 256
floats (256 MiB) through memory a few dozen times. For a grid of point
prompts on one embedding this module computes the same numbers with less work:

- in the first two-way block the image tokens are the same for every prompt,
  so their projections (token-to-image keys and values, image-to-token
  queries) are computed once per embedding;
- the image-side steps run on a few prompts at a time (16 MiB tensors, which
  the allocator recycles, instead of fresh 256 MiB ones), the token-side
  steps on the whole batch;
- the few layout-neutral steps are cheaper: the attention scale is folded
  into the smaller operand when it is a power of two (exact), LayerNorm2d
  centres once and normalises in place;
- the predicted IoUs come from the transformer alone, so the expensive
  upscaling of the image tokens (two transposed convolutions) only runs for
  the prompts that have a candidate passing the IoU filter.

Each matrix product gets the same operands, in the same memory layout, as in
SAM's code (the layout picks the GEMM kernel, so it matters for the last
bit); row-wise operations do not depend on how many rows run together,
except for a batch of one prompt, which is avoided where SAM had more. The
outputs therefore equal ``MaskDecoder.forward`` bit for bit, which
``tests/test_instances_decoder.py`` checks (tiny and ViT-B widths).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .mask_decoding import (
    DecodedPrompts,
    empty_masks,
    mask_side,
    prediction_heads,
    prompt_tokens,
    sam_attention,
    sam_attention_heads,
    step_slices,
    upscale_to_masks,
)

IMAGE_SIDE_BYTES = 16 << 20  # image tokens per image-side step (ViT: 4 prompts x 4096 x 256 floats)


class ExactMaskDecoder:
    """SAM's mask decoder applied to batches of point prompts on one image embedding.

    Args:
        mask_decoder: SAM's ``MaskDecoder`` (its modules and weights are used as they are).
        image_embedding: (1, C, h, w) the encoder neck of one image / view / modality.
        image_pe: (1, C, h, w) the prompt encoder's dense positional encoding.
        dense_embedding: (1, C, h, w) the prompt encoder's "no mask" embedding.
        image_side_prompts: prompts per image-side step (speed only, never the
            result); default: as many as fit in 16 MiB of image tokens.
    """

    def __init__(
        self,
        mask_decoder: nn.Module,
        image_embedding: Tensor,
        image_pe: Tensor,
        dense_embedding: Tensor,
        image_side_prompts: int | None = None,
    ) -> None:
        self.decoder = mask_decoder
        self.transformer = mask_decoder.transformer
        _, c, h, w = image_embedding.shape
        if image_side_prompts is None:
            image_side_prompts = IMAGE_SIDE_BYTES // (c * h * w * image_embedding.element_size())
        self.step = max(1, image_side_prompts)
        self.shape = (c, h, w)
        self.mask_side = mask_side(mask_decoder, h, w)
        # (1, N, C) views in SAM's (transposed) layout: the first block projects
        # them as they are, and the layout selects the GEMM kernel. SAM copies
        # the embedding into a standard (N, C, h, w) tensor first (a channels-last
        # encoder output would otherwise flatten to another layout)
        src = image_embedding.contiguous() + dense_embedding
        self.keys = src.flatten(2).permute(0, 2, 1)
        self.key_pe = image_pe.flatten(2).permute(0, 2, 1)
        # row-major copies for the element-wise sums (same values, faster reads)
        self.keys_rows = self.keys.contiguous()
        self.key_pe_rows = self.key_pe.contiguous()
        first = self.transformer.layers[0]
        if not first.skip_first_layer_pe:
            raise ValueError("expected SAM's TwoWayTransformer (no PE in the first block)")
        keys_pe = self.keys + self.key_pe
        self.first_t2i_k = first.cross_attn_token_to_image.k_proj(keys_pe)
        self.first_t2i_v = first.cross_attn_token_to_image.v_proj(self.keys)
        self.first_i2t_q = first.cross_attn_image_to_token.q_proj(keys_pe)

    # ------------------------------------------------------------ transformer
    def run_transformer(self, sparse: Tensor) -> DecodedPrompts:
        """Two-way transformer, IoU head and hypernetworks for (B, P, C) sparse embeddings."""
        point_pe = prompt_tokens(self.decoder, sparse)
        queries, keys = point_pe, None
        for layer in self.transformer.layers:
            queries = self._token_block(layer, queries, keys, point_pe)
            keys = self._image_block(layer, queries, keys, point_pe)
        final = self.transformer.final_attn_token_to_image
        attn_out = self._token_to_image(final, queries + point_pe, keys)
        queries = self.transformer.norm_final_attn(queries + attn_out)
        return DecodedPrompts(keys, *prediction_heads(self.decoder, queries))

    def _token_block(
        self, layer: nn.Module, queries: Tensor, keys: list[Tensor] | None, query_pe: Tensor
    ) -> Tensor:
        """Self-attention, token-to-image attention and MLP of one two-way block."""
        if layer.skip_first_layer_pe:
            queries = sam_attention(layer.self_attn, queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + sam_attention(layer.self_attn, q, q, queries)
        queries = layer.norm1(queries)
        attn_out = self._token_to_image(
            layer.cross_attn_token_to_image, queries + query_pe, keys, first=keys is None
        )
        queries = layer.norm2(queries + attn_out)
        return layer.norm3(queries + layer.mlp(queries))

    def _token_to_image(
        self, attn: nn.Module, q: Tensor, keys: list[Tensor] | None, first: bool = False
    ) -> Tensor:
        """Tokens (B, T, C) attend to the image tokens; the image side runs in steps."""
        q = attn.q_proj(q)
        heads = torch.empty_like(q)
        for j, sl in enumerate(step_slices(q.shape[0], self.step)):
            n = sl.stop - sl.start
            if first:
                k = self.first_t2i_k.expand(n, -1, -1)
                v = self.first_t2i_v.expand(n, -1, -1)
            else:
                k = attn.k_proj(keys[j] + self.key_pe_rows)
                v = attn.v_proj(keys[j])
            heads[sl] = sam_attention_heads(attn.num_heads, q[sl], k, v)
        return attn.out_proj(heads)

    def _image_block(
        self,
        layer: nn.Module,
        queries: Tensor,
        keys: list[Tensor] | None,
        query_pe: Tensor,
    ) -> list[Tensor]:
        """Image-to-token attention and norm4 of one block: the new image tokens, in steps."""
        attn = layer.cross_attn_image_to_token
        k = attn.k_proj(queries + query_pe)
        v = attn.v_proj(queries)
        out = []
        for j, sl in enumerate(step_slices(queries.shape[0], self.step)):
            n = sl.stop - sl.start
            if keys is None:
                base, q = self.keys_rows, self.first_i2t_q.expand(n, -1, -1)
            else:
                base = keys[j]
                q = attn.q_proj(base + self.key_pe_rows)
            attn_out = attn.out_proj(sam_attention_heads(attn.num_heads, q, k[sl], v[sl]))
            out.append(layer.norm4(attn_out + base))
        return out

    # ---------------------------------------------------------------- masks
    def masks(
        self, decoded: DecodedPrompts, index: Tensor, needed: tuple[int, int] | None = None
    ) -> Tensor:
        """Low-resolution mask logits (len(index), num_mask_tokens, 4h, 4w) of the prompts ``index``.

        ``needed``: (rows, cols) of the low-resolution masks that are used
        (their top-left corner; e.g. the image without the canvas padding);
        see :func:`upscale_to_masks`.
        """
        chunks = []
        for sl in step_slices(len(index), self.step):
            idx = index[sl]
            if len(idx) == 1 and len(decoded.iou) > 1:
                # SAM ran this prompt in a batch, and a batch of one takes other
                # kernels: pair it with itself
                idx = idx.repeat(2)
            image = decoded.image_tokens(idx)
            masks = upscale_to_masks(self.decoder, image, decoded.hyper_in[idx], self.shape, needed)
            chunks.append(masks[: sl.stop - sl.start])
        if not chunks:
            return empty_masks(self.decoder, decoded.hyper_in, self.shape, needed)
        return torch.cat(chunks)
