"""Our state dict has exactly the published tensor names, shapes and parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

from panosamic.model.config import VIT_PRESETS, model_config_from_dict
from panosamic.model.panosamic import FROZEN_PREFIXES, TRAINABLE_PREFIXES, expected_shapes
from panosamic.weights import (
    PUBLISHED_FUSION,
    config_from_checkpoint,
    inspect_checkpoint,
    parse_variant_name,
)
from tests.layouts import VARIANTS, layout_config, read_layout


def test_all_published_layouts_are_covered():
    assert len(VARIANTS) == 15  # 7 published architectures x {ECA, FC} + the single-view ablation


@pytest.mark.parametrize("name", VARIANTS)
def test_trainable_tensors_match_publishedread_layout(name):
    layout = read_layout(name)
    shapes = expected_shapes(layout_config(layout), semantic_only=True)
    ours = {k: s for k, s in shapes.items() if k.startswith(TRAINABLE_PREFIXES)}
    theirs = {k: tuple(s) for k, s, _ in layout["tensors"]}
    assert ours == theirs
    assert sum(math.prod(s) for s in ours.values()) == layout["trainable_params"]


@pytest.mark.parametrize("name", VARIANTS)
def test_architecture_is_read_back_from_the_tensors(name):
    layout = read_layout(name)
    state = {k: torch.empty(s, device="meta") for k, s, _ in layout["tensors"]}
    facts = inspect_checkpoint(state)
    assert facts.vit_model == layout["vit_model"]
    assert facts.num_classes == layout["num_classes"]
    assert facts.num_modalities == len(layout["modalities"])
    assert facts.dual_view == layout["dual_view_fusion"]
    assert facts.channel_attention == (
        "eca" if layout["channel_attention"].startswith("efficient") else "fc"
    )
    variant = name.removesuffix("-fc") + "-fold1"
    config = config_from_checkpoint(
        state,
        source=name,
        config=None
        if layout["dual_view_fusion"]
        else {**PUBLISHED_FUSION, "dual_view_fusion": False},
        variant=variant,
        modalities=None
        if "rgbd" not in name or "rgbdn" in name or "stanford" in name
        else layout["modalities"],
    )
    assert config == layout_config(layout)


@pytest.mark.parametrize("vit", ["vit_b", "vit_l", "vit_h"])
def test_frozen_sam_tensors_match_official_files(vit):
    layout = read_layout(f"sam-{vit.replace('_', '')}")
    config = model_config_from_dict(PUBLISHED_FUSION, vit_model=vit)
    shapes = expected_shapes(config)
    ours = {k: s for k, s in shapes.items() if k.startswith(FROZEN_PREFIXES)}
    theirs = {k: tuple(s) for k, s, _ in layout["tensors"]}
    assert ours == theirs
    assert config.encoder == VIT_PRESETS[vit]


def test_semantic_only_model_has_no_prompt_modules():
    config = model_config_from_dict(PUBLISHED_FUSION, vit_model="vit_b")
    shapes = expected_shapes(config, semantic_only=True)
    assert not any(k.startswith(("prompt_encoder.", "mask_decoder.")) for k in shapes)


@pytest.mark.parametrize(
    ("name", "dataset", "vit", "mods"),
    [
        ("stanford2d3ds-vith-rgbdn-fold1", "stanford2d3ds", "vit_h", ("image", "depth", "normals")),
        ("stanford2d3ds-vitb-rgbdn-fold3", "stanford2d3ds", "vit_b", ("image", "depth", "normals")),
        ("matterport3d-vith-rgbd", "matterport3d", "vit_h", ("image", "depth")),
        ("matterport3d-vith-rgb", "matterport3d", "vit_h", ("image",)),
        ("my-run", None, None, None),
    ],
)
def test_variant_names(name, dataset, vit, mods):
    parsed = parse_variant_name(name)
    assert (parsed.dataset, parsed.vit_model, parsed.modalities) == (dataset, vit, mods)
