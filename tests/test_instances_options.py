"""Instance masks in the model: output format, switches, and each option's effect."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from panosamic.instances.amg import (
    Probe,
    encode_points,
    generate_masks,
    point_grid,
    prompt_context,
    prompt_decoder,
)
from panosamic.instances.config import AMGConfig
from panosamic.instances.masks import pairwise_iou
from panosamic.model import PanoSAMic
from panosamic.model.config import PanoSAMicConfig, model_config_from_dict
from panosamic.model.instance_semantic_fusion import refine_semantic_with_instances
from tests.conftest import golden_model_json
from tests.instance_models import neck_of, random_instance_model, random_panorama

FEW = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.9}


@pytest.mark.parametrize("height", [64, 256], ids=["64x128", "256x512"])
def test_masks_at_input_resolution_sorted_and_refined(height):
    """The network runs at 128 x 256; masks come back at the input's size."""
    model = random_instance_model(dual_view=False, **FEW)
    batch = random_panorama(model, height) * 2  # two images in one batch
    batch[1] = {m: 255 - x for m, x in batch[1].items()}
    with torch.no_grad():
        outputs = model(batch, refine=True)
    assert len(outputs) == 2
    for out in outputs:
        masks = out["instance_masks"]
        assert masks, "expected instance masks"
        for m in masks:
            assert set(m) == {"segmentation", "area", "predicted_iou", "stability_score"}
            assert m["segmentation"].dtype == torch.bool
            assert tuple(m["segmentation"].shape) == (height, 2 * height)
            assert isinstance(m["area"], int) and m["area"] == int(m["segmentation"].sum()) > 0
            assert isinstance(m["predicted_iou"], float) and isinstance(m["stability_score"], float)
            assert m["stability_score"] >= 0.9
        areas = [m["area"] for m in masks]
        assert areas == sorted(areas, reverse=True)
        stack = torch.stack([m["segmentation"] for m in masks])
        iou = pairwise_iou(stack, stack)  # single view: the greedy merge's output
        assert not (iou.triu(diagonal=1) > model.config.amg.merge_threshold).any()
        refined = refine_semantic_with_instances(out["sem_preds"], masks)
        assert torch.equal(out["refined_sem_preds"], refined)
        assert out["labels"].shape == (height, 2 * height)
        assert torch.equal(out["labels"], refined.argmax(0))


def test_semantic_only_switches():
    model = random_instance_model(**FEW)
    batch = random_panorama(model)
    with torch.no_grad():
        (full,) = model(batch)
        (semantic,) = model(batch, semantic_only=True)
    assert full["instance_masks"] and semantic["instance_masks"] == []
    assert torch.equal(full["sem_preds"], semantic["sem_preds"])
    assert "labels" not in full
    with pytest.raises(ValueError, match="refine=True needs the instance masks"):
        model(batch, semantic_only=True, refine=True)

    built = PanoSAMic(model.config, semantic_only=True).eval()
    assert not hasattr(built, "mask_decoder") and not hasattr(built, "prompt_encoder")
    built.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith(("prompt", "mask"))}
    )
    with torch.no_grad():
        (out,) = built(batch)
    assert out["instance_masks"] == [] and torch.equal(out["sem_preds"], full["sem_preds"])
    with pytest.raises(ValueError, match="semantic_only=True"):
        built(batch, semantic_only=False)


def _one_embedding(model, amg: AMGConfig, neck: torch.Tensor, size=(64, 128)):
    cfg = model.config
    probe = Probe()
    sparse = encode_points(model.prompt_encoder, point_grid(amg, 256, cfg.input_size), 64)
    pe, dense = prompt_context(model.prompt_encoder)
    decoder = prompt_decoder(amg, model.mask_decoder, neck[:1], pe, dense)
    with torch.no_grad():
        masks = generate_masks(decoder, sparse, amg, 256, cfg.input_size, size, probe)
    return masks, probe.counts


def test_point_grid_options():
    canvas = point_grid(AMGConfig(), 1024, (512, 1024))
    assert canvas.shape == (1024, 2) and canvas[0].tolist() == [16.0, 16.0]
    assert canvas[1].tolist() == [48.0, 16.0]  # x varies fastest
    assert canvas[:, 1].max() == 1008 and (canvas[:, 1] >= 512).sum() == 512  # half in padding
    image = point_grid(AMGConfig(point_grid="image"), 1024, (512, 1024))
    assert image.shape == (512, 2) and image[:, 1].max() == 496
    assert torch.equal(image, canvas[canvas[:, 1] < 512])  # the same points, padding skipped
    assert point_grid(AMGConfig(points_per_side=16), 1024, (512, 1024)).shape == (256, 2)

    model = random_instance_model(**FEW)
    neck = neck_of(model, random_panorama(model))
    _, full = _one_embedding(model, model.config.amg, neck)
    _, fewer = _one_embedding(model, AMGConfig(**(FEW | {"point_grid": "image"})), neck)
    assert full["candidates"] == 3 * 64 and fewer["candidates"] == 3 * 32


def test_modality_option_runs_only_the_chosen_embeddings():
    model = random_instance_model(**FEW)
    batch = random_panorama(model)
    neck = neck_of(model, batch)
    counts_all: dict[str, int] = {}
    model.instance_masks(neck, [(64, 128)], counts=counts_all)
    model.set_amg(modalities=("image",))
    counts_one: dict[str, int] = {}
    model.instance_masks(neck, [(64, 128)], counts=counts_one)
    assert counts_all["candidates"] == 3 * 64 * 2 * 3  # per point, view and modality
    assert counts_one["candidates"] == 3 * 64 * 2
    with pytest.raises(ValueError, match="not among the model's"):
        PanoSAMic(PanoSAMicConfig(modalities=("image",), amg=AMGConfig(modalities=("depth",))))


def test_small_region_removal():
    keep_all = FEW | {"box_nms_thresh": 1.0}  # no box NMS: many masks, many small regions
    model = random_instance_model(**keep_all)
    neck = neck_of(model, random_panorama(model))
    plain, _ = _one_embedding(model, AMGConfig(**keep_all), neck)
    cleaned, _ = _one_embedding(model, AMGConfig(**(keep_all | {"min_mask_region_area": 25})), neck)
    four = ndimage.generate_binary_structure(2, 1)

    def region_sizes(mask: torch.Tensor) -> np.ndarray:
        labels, _ = ndimage.label(mask.numpy(), structure=four)
        return np.bincount(labels.ravel())[1:]

    assert sum(int((region_sizes(m) < 25).sum()) for m in plain.masks) > 20
    assert len(cleaned) == len(plain)  # no mask lost all of its regions here
    for before, after in zip(plain.masks, cleaned.masks, strict=True):
        assert (region_sizes(after) >= 25).all()
        assert bool((after <= before).all())  # only pixels removed ...
        assert int(after.sum()) == int(region_sizes(before)[region_sizes(before) >= 25].sum())
    assert torch.equal(cleaned.iou, plain.iou) and torch.equal(cleaned.stability, plain.stability)


def test_amg_config_from_json_and_set_amg(tmp_path):
    data = golden_model_json("tiny-instances")
    data["amg"] = {"points_per_side": 16, "box_nms_thresh": 0.5, "// note": "comments are fine"}
    config = model_config_from_dict(data, vit_model=None)
    assert config.amg.points_per_side == 16 and config.amg.merge_threshold == 0.5
    assert config.amg.dual_view_threshold == 0.5 and config.amg.pred_iou_thresh == 0.88
    assert PanoSAMicConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown amg config keys"):
        model_config_from_dict(data | {"amg": {"points_per_sde": 8}}, vit_model=None)
    with pytest.raises(ValueError, match="point_grid"):
        AMGConfig(point_grid="sphere")
    model = random_instance_model()
    assert model.set_amg(points_per_side=4) is model and model.config.amg.points_per_side == 4
    with pytest.raises(ValueError, match="unknown amg settings"):
        model.set_amg(points=4)
