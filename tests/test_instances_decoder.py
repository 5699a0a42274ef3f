"""The mask decoders against SAM's: the exact one and the crop-first upsampling bit for bit,
the factored one as accurate as SAM's own float32 arithmetic."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from panosamic.instances.amg import (
    encode_points,
    logit_boxes,
    low_res_region,
    point_grid,
    prompt_context,
    upsample_to_image,
)
from panosamic.instances.config import AMGConfig
from panosamic.instances.exact_decoder import ExactMaskDecoder
from panosamic.instances.factored_decoder import FactoredMaskDecoder
from panosamic.instances.workspace import Workspace
from panosamic.model.config import VIT_PRESETS, PanoSAMicConfig, model_config_from_dict
from panosamic.model.panosamic import prompt_modules_for
from tests.conftest import golden_model_json
from tests.instances_reference import upsample_to_image_reference


def _prompt_modules(vit_b: bool, seed: int = 0, depth: int = 2):
    torch.manual_seed(seed)
    if vit_b:
        config = PanoSAMicConfig(encoder=VIT_PRESETS["vit_b"], vit_model="vit_b")
    else:
        config = model_config_from_dict(golden_model_json("tiny-instances"), vit_model=None)
    config = replace(config, prompt_decoder=replace(config.prompt_decoder, transformer_depth=depth))
    prompt_encoder, mask_decoder = prompt_modules_for(config)
    with torch.no_grad():  # confident, sharp masks: large logits and IoUs
        for p in mask_decoder.parameters():
            p.mul_(3.0)
    return config, prompt_encoder.eval(), mask_decoder.eval()


def _grid_inputs(config, prompt_encoder, n: int):
    """n grid points, a random channels-last embedding (as the encoder may return it),
    SAM's sparse and dense prompt embeddings and its positional encoding."""
    enc = config.encoder
    points = point_grid(AMGConfig(points_per_side=8), enc.img_size, config.input_size)[:n]
    embedding = torch.randn(1, enc.out_chans, enc.grid_size, enc.grid_size)
    embedding = embedding.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        sparse, dense = prompt_encoder(
            points=(points[:, None, :], torch.ones(n, 1, dtype=torch.int)), boxes=None, masks=None
        )
        return points, embedding, sparse, dense, prompt_encoder.get_dense_pe()


@pytest.mark.parametrize("vit_b", [False, True], ids=["tiny", "vit_b"])
def test_grid_decoder_equals_sam_mask_decoder(vit_b):
    config, prompt_encoder, mask_decoder = _prompt_modules(vit_b)
    enc = config.encoder
    n = 8 if vit_b else 64  # the reference decodes 64 prompts at a time; ViT-B kept short
    points, embedding, sparse_ref, dense_ref, image_pe = _grid_inputs(config, prompt_encoder, n)
    with torch.no_grad():
        masks_ref, iou_ref = mask_decoder.predict_masks(embedding, image_pe, sparse_ref, dense_ref)

        sparse = encode_points(prompt_encoder, points, 64)
        assert torch.equal(sparse, sparse_ref)
        pe, dense = prompt_context(prompt_encoder)
        for step in (None, 1, 3):  # a lone prompt in the last step takes other kernels
            decoder = ExactMaskDecoder(mask_decoder, embedding, pe, dense, image_side_prompts=step)
            decoded = decoder.run_transformer(sparse)
            assert torch.equal(decoded.iou, iou_ref)
            assert torch.equal(decoder.masks(decoded, torch.arange(n)), masks_ref)
            for subset in ([0], [n - 1], [1, 4, 5], list(range(1, n, 2))):
                index = torch.tensor(subset)
                assert torch.equal(decoder.masks(decoded, index), masks_ref[index]), subset
            # only the image tokens under the image (landscape and portrait) are upscaled
            side = masks_ref.shape[-1]
            assert decoder.mask_side == side
            for network in ((enc.img_size // 2, enc.img_size), (enc.img_size, enc.img_size // 3)):
                rows, cols = low_res_region(enc.img_size, side, network)
                cropped = decoder.masks(decoded, torch.arange(n), (rows, cols))
                r, c = cropped.shape[-2:]
                assert rows <= r < rows + 4 and cols <= c < cols + 4
                assert (r, c) != (side, side)
                assert torch.equal(cropped, masks_ref[..., :r, :c]), network
    assert masks_ref.abs().max() > 10  # sharp masks: the comparison covers large logits


@pytest.mark.parametrize(
    ("vit_b", "depth"),
    [(False, 2), (False, 1), (False, 3), (True, 2)],
    ids=["tiny", "tiny-depth1", "tiny-depth3", "vit_b"],
)
def test_factored_decoder_is_as_accurate_as_sam(vit_b, depth):
    """Against SAM's decoder in float64, the factored float32 decoder errs no more than
    SAM's own float32 decoder (the weights x3 make attention sharp: a hard case)."""
    config, prompt_encoder, mask_decoder = _prompt_modules(vit_b, depth=depth)
    enc = config.encoder
    n = 8 if vit_b else 24
    _, embedding, sparse, dense_ref, image_pe = _grid_inputs(config, prompt_encoder, n)
    with torch.no_grad():
        masks_32, iou_32 = mask_decoder.predict_masks(embedding, image_pe, sparse, dense_ref)
        masks_64, iou_64 = (
            copy.deepcopy(mask_decoder)
            .double()
            .predict_masks(
                embedding.double(), image_pe.double(), sparse.double(), dense_ref.double()
            )
        )
        pe, dense = prompt_context(prompt_encoder)
        side = masks_32.shape[-1]
        rows, cols = low_res_region(enc.img_size, side, config.input_size)
        for step in (1, 3):  # steps that do and do not divide the batch
            decoder = FactoredMaskDecoder(mask_decoder, embedding, pe, dense, step=step)
            assert decoder.mask_side == side
            decoded = decoder.run_transformer(sparse)
            masks = decoder.masks(decoded, torch.arange(n))
            for ours, sams, exact in ((decoded.iou, iou_32, iou_64), (masks, masks_32, masks_64)):
                our_error = (ours.double() - exact).abs().max()
                sam_error = (sams.double() - exact).abs().max()
                assert our_error <= 2 * sam_error + 1e-6 * exact.abs().max()
                assert ((ours > 0) != (sams > 0)).double().mean() < 1e-4
            # subsets (other batch sizes: other kernels) and the crop give the same masks
            tol = 1e-6 * masks.abs().max()
            for subset in ([0], [n - 1], [1, 4, 5]):
                index = torch.tensor(subset)
                assert (decoder.masks(decoded, index) - masks[index]).abs().max() <= tol, subset
            cropped = decoder.masks(decoded, torch.arange(n), (rows, cols))
            r, c = cropped.shape[-2:]
            assert rows <= r < rows + 4 and cols <= c < cols + 4
            assert (cropped - masks[..., :r, :c]).abs().max() <= tol
            # the buffers are reused: a second batch gives the same numbers again
            again = decoder.run_transformer(sparse)
            assert torch.equal(again.iou, decoded.iou)
    assert masks_32.abs().max() > 10


def test_grid_decoder_single_prompt_equals_sam():
    """A batch of one prompt (a last partial batch) runs SAM's shapes too."""
    config, prompt_encoder, mask_decoder = _prompt_modules(vit_b=False, seed=1)
    enc = config.encoder
    points = point_grid(AMGConfig(points_per_side=4), enc.img_size, config.input_size)[5:6]
    embedding = torch.randn(1, enc.out_chans, enc.grid_size, enc.grid_size)
    with torch.no_grad():
        sparse, dense_ref = prompt_encoder(
            points=(points[:, None, :], torch.ones(1, 1, dtype=torch.int)), boxes=None, masks=None
        )
        masks_ref, iou_ref = mask_decoder.predict_masks(
            embedding, prompt_encoder.get_dense_pe(), sparse, dense_ref
        )
        pe, dense = prompt_context(prompt_encoder)
        decoder = ExactMaskDecoder(mask_decoder, embedding, pe, dense)
        decoded = decoder.run_transformer(sparse)
        assert torch.equal(decoded.iou, iou_ref)
        assert torch.equal(decoder.masks(decoded, torch.tensor([0])), masks_ref)


@pytest.mark.parametrize(
    ("canvas", "network", "out"),
    [
        (256, (128, 256), (128, 256)),
        (256, (128, 256), (64, 128)),
        (256, (128, 256), (256, 512)),
        (256, (256, 96), (256, 96)),
        (1024, (512, 1024), (512, 1024)),
    ],
)
def test_crop_first_upsampling_equals_canvas_upsampling(canvas, network, out):
    generator = torch.Generator().manual_seed(0)
    side = canvas // 4
    low = torch.randn(5, side, side, generator=generator) * 20
    fast = upsample_to_image(low, canvas, network, out)
    reference = upsample_to_image_reference(low, canvas, network, out)
    assert fast.shape == (5, *out)
    assert torch.equal(fast, reference)
    # low-res masks cropped to the region upsampling reads give the same logits
    rows, cols = low_res_region(canvas, side, network)
    assert (rows, cols) != (side, side)
    cropped = upsample_to_image(low[:, :rows, :cols], canvas, network, out, side)
    assert torch.equal(cropped, reference)
    # into a reused buffer: the same kernel, the same numbers, twice
    work = Workspace(low)
    for _ in range(2):
        buffered = upsample_to_image(low[:, :rows, :cols], canvas, network, out, side, work)
        assert torch.equal(buffered, reference)
    with pytest.raises(ValueError, match="do not cover"):
        upsample_to_image(low[:, : rows - 1, :cols], canvas, network, out, side)


def test_logit_boxes_equal_sams_mask_boxes():
    from segment_anything.utils.amg import batched_mask_to_box

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 40, 70, generator=generator) - 2.5  # sparse masks
    logits[0] = -1.0  # empty
    logits[1, 7, 3] = 5.0
    logits[1] = torch.where(logits[1] > 4.9, logits[1], -1.0)  # a single pixel
    logits[2, :, -1] = 3.0  # touches the right edge
    boxes = logit_boxes(logits[:, 1:39], 0.0)  # a view, as upsampling returns
    reference = batched_mask_to_box(logits[:, 1:39] > 0.0)
    assert boxes.dtype == reference.dtype and torch.equal(boxes, reference)
    assert boxes[0].tolist() == [0, 0, 0, 0] and boxes[1].tolist() == [3, 6, 3, 6]
