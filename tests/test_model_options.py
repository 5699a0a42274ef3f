"""Model switches: precision, activation checkpointing, frozen SAM parts."""

from __future__ import annotations

import pytest
import torch

from panosamic.weights import load_panosamic
from tests.conftest import golden_inputs, write_hub_layout


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    hub, sam, config = write_hub_layout(tmp_path_factory.mktemp("options"), "tiny-dual")
    return load_panosamic(
        hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam, semantic_only=True
    )


def test_bf16_agrees_with_fp32(model):
    batch = [golden_inputs("tiny-dual")]
    with torch.no_grad():
        full = model(batch)[0]["sem_preds"]
        model.precision = "bf16"
        try:
            low = model(batch)[0]["sem_preds"]
        finally:
            model.precision = "fp32"
    assert low.dtype == torch.float32
    assert (low.argmax(0) == full.argmax(0)).float().mean() > 0.95
    assert not torch.equal(low, full)


def test_unknown_precision(model):
    with pytest.raises(ValueError, match="precision must be one of"):
        model.precision = "int4"


def _grads(model, checkpointing: bool) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model.train()
    model.gradient_checkpointing = checkpointing
    try:
        logits = model([golden_inputs("tiny-dual")])[0]["sem_preds"]
        (logits.square().mean()).backward()
    finally:
        model.eval()
        model.gradient_checkpointing = False
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_activation_checkpointing_gives_the_same_gradients(model):
    plain, recomputed = _grads(model, False), _grads(model, True)
    assert plain.keys() == recomputed.keys()
    assert all(n.startswith(("feature_fuser.", "semantic_decoder.")) for n in plain)
    assert any(n.startswith("feature_fuser.") for n in plain)
    for name in plain:
        assert torch.allclose(plain[name], recomputed[name], atol=1e-6, rtol=1e-4), name


def test_training_mode_keeps_sam_frozen_and_in_eval(model):
    model.train()
    try:
        assert model.feature_fuser.training and not model.image_encoder.training
    finally:
        model.eval()
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert all(p.requires_grad for p in model.semantic_decoder.parameters())
