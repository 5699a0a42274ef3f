"""The reference's outputs on the golden tiny models, through the user-facing loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panosamic.model import PanoSAMic
from tests.conftest import golden_expected, golden_inputs, write_hub_layout

TOL = 1e-4  # the contract is 1e-3; float32 round-off here is ~5e-6


def _load(tmp_path, name: str, **kwargs) -> PanoSAMic:
    hub, sam, config = write_hub_layout(tmp_path, name)
    return PanoSAMic.from_pretrained_panosamic(
        str(hub), subfolder=name, config_path=str(config), sam_weights_path=str(sam), **kwargs
    )


def _max_diff(ours: torch.Tensor, theirs: np.ndarray) -> float:
    assert tuple(ours.shape) == theirs.shape
    return float((ours.detach().double() - torch.from_numpy(theirs).double()).abs().max())


@pytest.mark.parametrize("name", ["tiny-dual", "tiny-single"])
def test_golden_logits_and_intermediates(tmp_path, name):
    model = _load(tmp_path, name, semantic_only=True)
    assert not model.training
    inputs = golden_inputs(name)
    expected = golden_expected(name)
    with torch.no_grad():
        stages = model.forward_features([inputs], keep_neck=True)
        (out,) = model([inputs])
    assert _max_diff(out["sem_preds"], expected["sem_preds"]) < TOL
    for i, branch in enumerate(stages["branches"]):
        assert _max_diff(branch, expected[f"branch{i}"]) < TOL
    assert _max_diff(stages["encoder_neck"], expected["encoder_neck"]) < TOL
    for key in ("fused_before_pe", "decoder_head", "decoder_out"):
        assert _max_diff(stages[key], expected[key]) < TOL, key
    assert out["instance_masks"] == []
    agree = (out["sem_preds"].argmax(0).numpy() == expected["sem_preds"].argmax(0)).mean()
    assert agree > 0.999


def test_golden_instances_fixture_semantic_path(tmp_path):
    """The instance fixture's SAM file (prompt encoder + mask decoder included) loads strictly."""
    model = _load(tmp_path, "tiny-instances")
    assert hasattr(model, "mask_decoder") and hasattr(model, "prompt_encoder")
    inputs = golden_inputs("tiny-instances")
    with torch.no_grad():
        (out,) = model([inputs], semantic_only=True)
    assert _max_diff(out["sem_preds"], golden_expected("tiny-instances")["sem_preds"]) < TOL
