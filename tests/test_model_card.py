"""The model card's snippet, verbatim but for ViT-B, on real-size files the test writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import set_hub_offline
from tests.realsize import VARIANT

pytestmark = pytest.mark.slow
LAYOUTS = Path(__file__).parent / "data" / "checkpoint-layout"


def test_model_card_snippet(vitb_files, monkeypatch):
    monkeypatch.chdir(
        vitb_files
    )  # "dfki-av/PanoSAMic" and "./sam_weights" are local directories here
    torch.manual_seed(1)
    batched_input = [{m: torch.rand(3, 64, 128) * 255 for m in ("image", "depth", "normals")}]

    from panosamic.model import PanoSAMic

    model = PanoSAMic.from_pretrained_panosamic(
        "dfki-av/PanoSAMic",
        subfolder=VARIANT,
        config_path="config/config_stanford2d3ds_dv.json",
        vit_model="vit_b",
        modalities=("image", "depth", "normals"),
        num_classes=13,
        sam_weights_path="./sam_weights",  # omit to auto-download from Meta's servers
    )
    model.set_amg(points_per_side=4)  # test speed only: 16 prompts per embedding, not 1024
    outputs = model(batched_input)  # list of dicts, one per image
    sem_preds = outputs[0]["sem_preds"]  # (num_classes, H, W) logits
    instance_masks = outputs[0]["instance_masks"]

    assert not model.training
    assert sem_preds.shape == (13, 64, 128) and torch.isfinite(sem_preds).all()
    assert isinstance(instance_masks, list)
    for mask in instance_masks:
        assert mask["segmentation"].shape == (64, 128) and mask["segmentation"].dtype == torch.bool

    from panosamic.model.instance_semantic_fusion import refine_semantic_with_instances

    if instance_masks:
        sem_preds = refine_semantic_with_instances(sem_preds, instance_masks)
    seg_map = sem_preds.argmax(dim=0)
    assert seg_map.shape == (64, 128)
    assert (
        model.config.channel_attention.efficient_attention
    )  # read off the checkpoint, not the JSON
    assert not any(
        p.requires_grad for n, p in model.named_parameters() if n.startswith("image_encoder.")
    )

    # Everything else is read off the file and the variant name.
    inferred = PanoSAMic.from_pretrained_panosamic(
        "dfki-av/PanoSAMic", subfolder=VARIANT, sam_weights_path="./sam_weights"
    )
    assert inferred.set_amg(points_per_side=4).config == model.config
    for (name, a), b in zip(
        model.state_dict().items(), inferred.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_single_view_checkpoint_loads_without_a_config(vitb_files, tmp_path):
    """The view mode is read off the file: a real-size single-view ViT-B RGB-D layout."""
    from safetensors.torch import save_file

    from panosamic.model import PanoSAMic

    layout = json.loads((LAYOUTS / "single-view-vitb-rgbd.json").read_text())
    folder = tmp_path / "hub" / "single-view-vitb-rgbd"
    folder.mkdir(parents=True)
    tensors = {
        name: torch.zeros(shape, dtype=torch.bfloat16) for name, shape, _ in layout["tensors"]
    }
    save_file(tensors, folder / "model.safetensors")
    model = PanoSAMic.from_pretrained_panosamic(
        tmp_path / "hub",
        subfolder="single-view-vitb-rgbd",
        sam_weights_path=vitb_files / "sam_weights",
        semantic_only=True,
    )
    config = model.config
    assert not config.dual_view_fusion and config.num_views == 1
    assert config.vit_model == "vit_b" and config.modalities == ("image", "depth")
    assert config.channel_attention_kind == "eca" and config.num_classes == 13
    assert model.trainable_state_dict().keys() == tensors.keys()


def test_hub_id_offline_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    set_hub_offline(monkeypatch, True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    from panosamic.model import PanoSAMic

    with pytest.raises(RuntimeError) as err:
        PanoSAMic.from_pretrained_panosamic("dfki-av/PanoSAMic", subfolder=VARIANT)
    text = str(err.value)
    assert "hf download dfki-av/PanoSAMic --include 'stanford2d3ds-vitb-rgbdn-fold1/*'" in text
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_unknown_published_variant(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from panosamic.model import PanoSAMic

    with pytest.raises(ValueError, match="not a published variant"):
        PanoSAMic.from_pretrained_panosamic(
            "dfki-av/PanoSAMic", subfolder="stanford2d3ds-vitb-rgb-fold1"
        )
