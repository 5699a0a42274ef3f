"""The encoder's lower-precision paths: the strided SDPA attention and its bias builder,
the bf16 / int8 encoder against float32, and float32 left exactly as it was."""

from __future__ import annotations

import pytest
import torch

from panosamic.model import image_encoder as ie
from panosamic.model.config import EncoderConfig
from panosamic.model.int8 import int8_available


def test_rel_pos_expander_builds_the_decomposed_bias_exactly():
    h, w = 3, 5
    bias_h, bias_w = torch.randn(7, h, dtype=torch.float64), torch.randn(7, w, dtype=torch.float64)
    expander = ie.rel_pos_expander(h, w, torch.float64, torch.device("cpu"))
    assert expander.shape == (h + w, h * w) and torch.equal(
        expander.sum(0), torch.full((h * w,), 2.0)
    )
    built = torch.cat([bias_h, bias_w], -1) @ expander
    expected = (bias_h[:, :, None] + bias_w[:, None, :]).reshape(7, h * w)
    assert torch.equal(built, expected)


@pytest.mark.parametrize("budget", [4 * 1024 * 1024, 2 * 36 * 36, 36 * 6])  # 3 chunk plans
def test_strided_attention_equals_the_plain_one(monkeypatch, budget):
    """(b, heads, N, d) strided views in, (b, N, heads, d) out; every chunking gives the same."""
    monkeypatch.setattr(ie, "_BIAS_CHUNK_ELEMENTS_SDPA_CPU", budget)
    b, heads, h, w, d = 3, 4, 6, 6, 8
    qkv = torch.randn(b, h * w, 3, heads, d, dtype=torch.float64)
    q, k, v = (p.transpose(1, 2) for p in qkv.unbind(2))  # strided, like the encoder's
    rel_h = ie.relative_position_table(h, torch.randn(2 * h - 1, d, dtype=torch.float64))
    rel_w = ie.relative_position_table(w, torch.randn(2 * w - 1, d, dtype=torch.float64))
    out = ie.attention_heads_with_rel_pos(q, k, v, rel_h, rel_w, (h, w))
    flat = [t.reshape(b * heads, h * w, d) for t in (q, k, v)]
    expected = ie.attention_with_rel_pos(*flat, rel_h, rel_w, (h, w))
    expected = expected.view(b, heads, h * w, d).transpose(1, 2)
    assert out.shape == (b, h * w, heads, d) and out.is_contiguous()
    assert (out - expected).abs().max() < 1e-12


def _tiny_encoder() -> ie.ImageEncoderViT:
    config = EncoderConfig(
        img_size=128, patch_size=16, embed_dim=64, depth=3, num_heads=4, window_size=3,
        global_attn_indexes=(1,), out_chans=32,
    )  # fmt: skip
    torch.manual_seed(0)
    encoder = ie.ImageEncoderViT(config).eval()
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.05)
    return encoder


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_lowered_encoder_is_close_to_float32_and_restores_its_weights(mode):
    if mode == "int8" and not int8_available():
        pytest.skip("no oneDNN int8 kernels here")
    encoder = _tiny_encoder()
    x = torch.randn(2, 3, 128, 128)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with torch.inference_mode():
        neck, branches = encoder(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_neck, low_branches = encoder(x, int8=mode == "int8")
    for full, low in zip([neck, *branches], [low_neck, *low_branches], strict=True):
        assert low.shape == full.shape
        assert (low.float() - full).norm() / full.norm() < 0.05
    after = encoder.state_dict()
    assert all(torch.equal(after[k], v) and after[k].dtype == v.dtype for k, v in before.items())


def test_float32_encoder_keeps_its_order_of_work():
    """The float32 path does not take the strided SDPA path, whatever the CPU."""
    qkv = torch.zeros(1, 2, 2, 24)
    assert not ie._strided_sdpa(qkv)
    assert not ie._strided_sdpa(qkv.to(torch.float16))
