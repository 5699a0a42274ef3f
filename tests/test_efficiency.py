"""`panosamic info`: parameters per component against the published layouts and the paper,
FLOPs against hand-counted formulas, the model never in memory."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor

from panosamic.benchmark import encoder_flops
from panosamic.cli import main
from panosamic.efficiency import (
    count_flops,
    count_parameters,
    efficiency_report,
    fake_model,
    json_config,
    published_config,
)
from panosamic.hub.catalog import PUBLISHED_FUSION
from panosamic.model.config import model_config_from_dict
from tests.layouts import VARIANTS, layout_config, read_layout


@pytest.mark.parametrize("name", VARIANTS)
def test_trainable_parameters_are_the_published_layouts(name):
    layout = read_layout(name)
    counts = count_parameters(layout_config(layout))
    assert counts["fusion"][1] + counts["decoder"][1] == layout["trainable_params"]
    assert counts["fusion"][0] + counts["decoder"][0] == layout["trainable_params"]
    assert counts["encoder"][1] == counts["instance path"][1] == 0  # SAM stays frozen


@pytest.mark.parametrize(
    ("variant", "paper_millions"),
    [
        ("stanford2d3ds-vith-rgb-fold1", 178),
        ("stanford2d3ds-vith-rgbd-fold2", 184),
        ("stanford2d3ds-vith-rgbdn-fold3", 191),
        ("stanford2d3ds-vitb-rgbdn", 144),
    ],
)
def test_trainable_parameters_are_the_papers(variant, paper_millions):
    config, family = published_config(variant)
    assert family == variant.rsplit("-fold", 1)[0]
    counts = count_parameters(config)
    assert round((counts["fusion"][1] + counts["decoder"][1]) / 1e6) == paper_millions
    fc_config, _ = published_config(variant, "fc")  # the reference's JSON configs: 197-368 M
    fc = count_parameters(fc_config)
    assert fc["fusion"][1] > counts["fusion"][1] and fc["decoder"] == counts["decoder"]


@pytest.mark.parametrize("vit", ["vitb", "vitl", "vith"])
def test_frozen_parameters_are_sams_files(vit):
    tensors = read_layout(f"sam-{vit}")["tensors"]

    def size(prefixes) -> int:
        return sum(
            math.prod(shape)
            for key, shape, _ in tensors
            if key.startswith(prefixes)  # SAM's random Fourier matrix is a buffer:
            and not key.endswith("positional_encoding_gaussian_matrix")
        )

    config = model_config_from_dict(PUBLISHED_FUSION, vit_model=f"vit_{vit[-1]}")
    counts = count_parameters(config)
    assert counts["encoder"] == (size("image_encoder."), 0)
    assert counts["instance path"] == (size(("prompt_encoder.", "mask_decoder.")), 0)


def test_vit_h_is_built_without_memory():
    config, _ = published_config("stanford2d3ds-vith-rgbdn")
    model, _ = fake_model(config)
    params = list(model.parameters())
    assert params and all(isinstance(p, FakeTensor) for p in params)
    assert sum(p.numel() for p in params) > 800e6  # 3.3 GB of float32 that never exist


@pytest.mark.slow
def test_flops_agree_with_hand_counts_for_vit_b():
    config, _ = published_config("stanford2d3ds-vitb-rgbdn")
    report = efficiency_report(config, instances=False)
    # the encoder: benchmark.py's analytic count (it leaves out the patch embedding and the
    # relative-position terms, about 1 %)
    counted = report.component("encoder").flops
    assert 1.0 <= counted / encoder_flops(config) < 1.03
    # the decoder by hand: 1x1 convs B*P -> P -> K at 4G x 4G per view, the blend's 7x7 conv
    # 2K -> K and 3x3 conv K -> 1 once, 2 FLOPs per multiply-add
    enc, k, views = config.encoder, config.num_classes, config.num_views
    pixels = (4 * enc.grid_size) ** 2
    p = enc.out_chans
    head = views * pixels * (enc.num_branches * p * p + p * k)
    blend = pixels * (2 * k * k * 49 + k * 9)
    assert report.component("decoder").flops == pytest.approx(2 * (head + blend), rel=1e-6)
    assert report.decoder_flops_ours < report.component("decoder").flops / 3  # conv at 2G
    assert report.total(False).flops == sum(c.flops for c in report.components)
    assert report.total(False).trainable == 143_675_430


def test_tiny_report_counts_every_component_and_the_instance_path():
    config = json_config("config/config_tiny_debug.json", modalities=("image", "depth"))
    report = efficiency_report(config, "tiny")
    assert [c.name for c in report.components] == ["encoder", "fusion", "decoder", "instance path"]
    assert all(c.flops > 0 for c in report.components)
    assert report.encoder_passes == 4 and report.instance_embeddings == 4
    assert report.prompts_per_embedding == 32 * 32
    assert 0 < report.instance_flops_ours < report.component("instance path").flops
    assert report.total().flops > report.total(False).flops
    assert report.title.startswith("tiny: custom encoder, image+depth, dual view, ECA")


def test_count_flops_counts_the_cpu_attention_kernel():
    q = torch.zeros(2, 4, 100, 16)
    flops, _ = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert flops == 2 * 2 * (2 * 4 * 100 * 100 * 16)  # q k^T and the weighted sum of v


def test_info_command_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "info.json"
    argv = ["info", "--config", "config/config_tiny_debug.json", "--modalities", "image,depth"]
    assert main([*argv, "--no-instances", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for word in ("encoder", "fusion", "decoder", "total, semantic", "GMACs", "fake tensors"):
        assert word in text
    assert not any(line.startswith("instance path") for line in text.splitlines())
    report = json.loads(out.read_text())
    assert set(report["components"]) == {"encoder", "fusion", "decoder", "semantic", "total"}
    semantic = report["components"]["semantic"]
    assert semantic["trainable"] + semantic["frozen"] == semantic["parameters"]
    assert semantic["macs"] == semantic["flops"] / 2


def test_info_command_errors(capsys):
    assert main(["info", "stanford2d3ds-vith-rgbx"]) == 2
    assert "not a published variant" in capsys.readouterr().err
    assert main(["info", "stanford2d3ds-vith-rgb", "--dataset", "tof360"]) == 2
    assert "drop --dataset" in capsys.readouterr().err
    assert main(["info"]) == 2
    assert "VARIANT" in capsys.readouterr().err
