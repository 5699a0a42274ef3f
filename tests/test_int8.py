"""precision="int8": the quantisers, the int8 linear layer, the layer selection, the model path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from panosamic.cli import main
from panosamic.model.config import DEFAULT_INT8_LAYERS, Int8Layers
from panosamic.model.image_encoder import ImageEncoderViT
from panosamic.model.int8 import (
    Int8Linear,
    Int8Linears,
    int8_available,
    quantize_activations,
    quantize_weight,
)
from panosamic.weights import load_panosamic
from tests.conftest import golden_expected, golden_inputs, write_hub_layout

needs_int8 = pytest.mark.skipif(not int8_available(), reason="no oneDNN int8 kernels here")


def test_weight_quantisation_is_per_channel_and_within_half_a_step():
    weight = torch.randn(6, 40) * torch.tensor([1e-3, 0.1, 1.0, 10.0, 0.0, 3.0])[:, None]
    q, scales = quantize_weight(weight)
    assert q.dtype == torch.int8 and scales.shape == (6,)
    assert int(q.abs().max()) == 127  # every non-zero row uses the full range
    assert torch.equal(q[4], torch.zeros(40, dtype=torch.int8)) and scales[4] == 1
    error = (q.float() * scales[:, None] - weight).abs()
    assert (error <= scales[:, None] / 2 + 1e-7).all()


def test_activation_quantisation_keeps_zero_exact_and_covers_the_range():
    x = torch.cat([torch.rand(50, 8) * 3 + 1, torch.zeros(1, 8)])  # all >= 0, one zero row
    q, scale, zero_point = quantize_activations(x)
    assert q.dtype == torch.uint8 and q.shape == x.shape
    assert zero_point == 0 and torch.equal(q[-1], torch.zeros(8, dtype=torch.uint8))
    restored = (q.float() - zero_point) * scale
    assert (restored - x).abs().max() <= scale / 2 + 1e-6
    q, scale, zero_point = quantize_activations(torch.zeros(4, 4))
    assert scale == 1.0 and int(q.max()) == zero_point


@needs_int8
def test_int8_linear_is_close_to_float_and_adds_in_place():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(37, 64)
    int8 = Int8Linear(linear)
    expected = linear(x).detach()
    out = int8(x, out_dtype=torch.float32)
    assert out.shape == (37, 48) and out.dtype == torch.float32
    assert (out - expected).norm() / expected.norm() < 0.02
    gelu = int8(x.view(37, 1, 64), gelu=True)
    assert gelu.shape == (37, 1, 48) and gelu.dtype == torch.bfloat16
    assert (gelu.float().view(37, 48) - F.gelu(expected)).abs().max() < 0.05
    residual = torch.randn(37, 48)
    total = int8(x, add_to=residual.clone())
    assert (total - (residual + out)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="64 input features"):
        int8(torch.randn(2, 63))


def test_layer_selection_by_kind_and_block():
    selection = Int8Layers(kinds=("qkv", "lin2"), dense_blocks=(1,))
    assert selection.quantizes("blocks.0.attn.qkv") and selection.quantizes("blocks.2.mlp.lin2")
    assert not selection.quantizes("blocks.1.attn.qkv")  # a dense block
    assert not selection.quantizes("blocks.0.attn.proj") and not selection.quantizes("neck.0")
    assert DEFAULT_INT8_LAYERS.quantizes("blocks.0.attn.proj")
    with pytest.raises(ValueError, match="unknown int8 layer kinds"):
        Int8Layers(kinds=("qkv", "conv"))


@needs_int8
def test_int8_weights_are_made_once_and_again_when_a_weight_changes():
    module = torch.nn.Module()
    module.blocks = torch.nn.ModuleList([torch.nn.Module()])
    module.blocks[0].mlp = torch.nn.Module()
    module.blocks[0].mlp.lin1 = torch.nn.Linear(8, 8)
    module.blocks[0].mlp.lin2 = torch.nn.Linear(8, 8)
    linears = Int8Linears(Int8Layers(kinds=("lin1",)))

    def layers():
        return [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]

    linears.refresh(layers())
    lin1, lin2 = module.blocks[0].mlp.lin1, module.blocks[0].mlp.lin2
    first = linears.get(lin1)
    assert first is not None and linears.get(lin2) is None
    linears.refresh(layers())
    assert linears.get(lin1) is first  # nothing changed: nothing re-quantised
    with torch.no_grad():
        lin1.weight.mul_(2)
    linears.refresh(layers())
    assert linears.get(lin1) is not first
    assert linears.quantized_layers() == {id(lin1)}
    x = torch.randn(3, 8)
    assert torch.equal(linears(lin2, x), lin2(x).detach())  # a dense layer as it is


@pytest.fixture(scope="module")
def golden_models(tmp_path_factory):
    models = {}
    for name in ("tiny-dual", "tiny-single"):
        hub, sam, config = write_hub_layout(tmp_path_factory.mktemp(name), name)
        models[name] = load_panosamic(
            hub, subfolder=name, config_path=config, sam_weights_path=sam, semantic_only=True
        )
    return models


@needs_int8
@pytest.mark.parametrize("name", ["tiny-dual", "tiny-single"])
def test_int8_on_the_golden_models_agrees_and_leaves_fp32_untouched(golden_models, name):
    model = golden_models[name]
    batch = [golden_inputs(name)]
    expected = torch.from_numpy(golden_expected(name)["sem_preds"])
    weights = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    try:
        model.precision = "int8"
        with torch.inference_mode():
            low = model(batch)[0]["sem_preds"]
    finally:
        model.precision = "fp32"
    assert low.dtype == torch.float32 and low.shape == expected.shape
    assert (low.argmax(0) == expected.argmax(0)).float().mean() > 0.97
    for key, value in model.image_encoder.state_dict().items():  # weights restored
        assert value.dtype == torch.float32 and torch.equal(value, weights[key]), key
    with torch.inference_mode():
        full = model(batch)[0]["sem_preds"]
    assert (full - expected).abs().max() < 1e-4


def test_int8_is_a_clear_error_off_the_cpu_and_under_autograd(golden_models):
    model = golden_models["tiny-dual"]
    encoder: ImageEncoderViT = model.image_encoder
    with torch.device("meta"), pytest.raises(ValueError, match="CPUs only"):
        encoder(torch.empty(1, 3, 256, 256), int8=True)
    with pytest.raises(ValueError, match="inference"):
        encoder(torch.zeros(1, 3, 256, 256), int8=True)
    with torch.device("meta"):
        on_meta = type(model)(model.config, semantic_only=True, precision="int8")
    with pytest.raises(ValueError, match="precision 'int8' runs on CPUs only"):
        on_meta.forward_features([golden_inputs("tiny-dual")])


@needs_int8
def test_bench_int8_reports_agreement(tmp_path, capsys):
    argv = ["bench", "--tiny", "--height", "64", "--repeats", "1", "--warmup", "0"]
    assert main([*argv, "--precision", "int8", "--compare-fp32"]) == 0
    text = capsys.readouterr().out
    assert "int8" in text and "argmax agreement with fp32" in text and "reference" not in text
