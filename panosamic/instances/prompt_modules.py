"""SAM's prompt encoder and mask decoder, sized for an image encoder.

They are SAM's own modules (``segment_anything.modeling``), so their tensors
load from an official SAM file as they are (``prompt_encoder.*``, ``mask_decoder.*``).
"""

from __future__ import annotations

from torch import nn

from .config import PromptDecoderConfig


def build_prompt_modules(
    config: PromptDecoderConfig, embed_dim: int, grid_size: int, img_size: int
) -> tuple[nn.Module, nn.Module]:
    """(PromptEncoder, MaskDecoder) for embeddings of ``embed_dim`` channels on a
    ``grid_size`` x ``grid_size`` grid of an ``img_size`` x ``img_size`` canvas."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

    prompt_encoder = PromptEncoder(
        embed_dim=embed_dim,
        image_embedding_size=(grid_size, grid_size),
        input_image_size=(img_size, img_size),
        mask_in_chans=config.mask_in_chans,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=config.num_multimask_outputs,
        transformer=TwoWayTransformer(
            depth=config.transformer_depth,
            embedding_dim=embed_dim,
            mlp_dim=config.mlp_dim,
            num_heads=config.num_heads,
        ),
        transformer_dim=embed_dim,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    return prompt_encoder, mask_decoder
