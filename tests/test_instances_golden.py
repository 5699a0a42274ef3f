"""The instance path against the reference implementation's output (tiny-instances fixture)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panosamic.model.instance_semantic_fusion import refine_semantic_with_instances
from tests.conftest import golden_expected, golden_inputs
from tests.instance_models import golden_instance_model, same_masks
from tests.instances_reference import reference_forward

pytestmark = pytest.mark.slow

SCORE_TOL = 1e-6  # float32 round-off of the encoder between machines (one ulp seen)


def test_golden_instance_masks_and_refinement(tmp_path):
    model = golden_instance_model(tmp_path)
    inputs = golden_inputs("tiny-instances")
    expected = golden_expected("tiny-instances")
    with torch.no_grad():
        (out,) = model([inputs], refine=True)

    masks = out["instance_masks"]
    want = np.unpackbits(expected["masks"], axis=-1).astype(bool)
    assert len(masks) == len(want) == len(expected["areas"])
    for i, mask in enumerate(masks):
        seg = mask["segmentation"]
        assert seg.dtype == torch.bool and tuple(seg.shape) == (128, 256)
        assert np.array_equal(seg.numpy(), want[i]), f"mask {i}"
        assert mask["area"] == int(expected["areas"][i]) == int(seg.sum())
        assert abs(mask["predicted_iou"] - expected["predicted_iou"][i]) < SCORE_TOL
        assert abs(mask["stability_score"] - expected["stability_score"][i]) < SCORE_TOL

    assert np.array_equal(out["labels"].numpy(), expected["refined_labels"])
    refined = refine_semantic_with_instances(out["sem_preds"], masks)  # the model card's way
    assert torch.equal(refined, out["refined_sem_preds"])
    assert np.array_equal(refined.argmax(dim=0).numpy(), expected["refined_labels"])
    # the refinement changes the prediction, so the comparison above means something
    assert not np.array_equal(out["sem_preds"].argmax(0).numpy(), expected["refined_labels"])

    (ref,) = reference_forward(model, [inputs])
    # the default (factored) decoder: SAM's masks, its scores up to float32 round-off
    assert same_masks(ref, masks, score_tol=SCORE_TOL)
    # the exact decoder: the reference order's masks and scores bit for bit
    model.set_amg(decoder="exact")
    with torch.no_grad():
        (exact,) = model([inputs], refine=True)
    assert same_masks(ref, exact["instance_masks"])
    assert torch.equal(exact["labels"], out["labels"])
