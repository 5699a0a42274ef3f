"""Our SAM image encoder equals segment-anything's official one on shared random weights."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import ImageEncoderViT as OfficialEncoder

from panosamic.model.config import EncoderConfig
from panosamic.model.image_encoder import ImageEncoderViT

TINY = EncoderConfig(
    img_size=128,
    patch_size=16,
    embed_dim=48,
    depth=4,
    num_heads=3,
    window_size=3,
    global_attn_indexes=(1, 3),
    out_chans=24,
)


def _official(cfg: EncoderConfig) -> OfficialEncoder:
    return OfficialEncoder(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        out_chans=cfg.out_chans,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=cfg.window_size,
        global_attn_indexes=cfg.global_attn_indexes,
    )


def test_encoder_matches_official_on_random_weights():
    torch.manual_seed(0)
    official = _official(TINY).double().eval()
    with torch.no_grad():  # random relative-position tables and norms, so every term matters
        for name, p in official.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "rel_pos" in name or "norm" in name else 0.2))
    ours = ImageEncoderViT(TINY).double().eval()
    missing, unexpected = ours.load_state_dict(official.state_dict(), strict=True)
    assert not missing and not unexpected

    captured: list[torch.Tensor] = []
    for i in TINY.global_attn_indexes:
        official.blocks[i].register_forward_hook(
            lambda m, a, out: captured.append(out.permute(0, 3, 1, 2))
        )
    x = torch.randn(2, 3, TINY.img_size, TINY.img_size, dtype=torch.float64)
    with torch.no_grad():
        expected_neck = official(x)
        neck, branches = ours(x)
    assert torch.allclose(neck, expected_neck, atol=1e-10, rtol=0)
    assert len(branches) == len(captured) == 2
    for mine, theirs in zip(branches, captured, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-10, rtol=0)
