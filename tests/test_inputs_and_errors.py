"""Bad input, bad files and contradicting arguments get clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from panosamic.model import PanoSAMic
from panosamic.model.inputs import InputError
from panosamic.weights import CheckpointError, load_panosamic, read_state_dict
from tests.conftest import golden_expected, golden_inputs, write_hub_layout


@pytest.fixture(scope="module")
def dual(tmp_path_factory):
    hub, sam, config = write_hub_layout(tmp_path_factory.mktemp("dual"), "tiny-dual")
    return load_panosamic(
        hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam, semantic_only=True
    )


def _sample(h=128, w=256, mods=("image", "depth", "normals")):
    return {m: torch.rand(3, h, w) * 255 for m in mods}


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "empty"),
        (_sample(), "list of dicts"),
        ([_sample(mods=("image", "depth"))], "missing modalities ['normals']"),
        ([{**_sample(), "thermal": torch.zeros(3, 128, 256)}], "unknown modalities ['thermal']"),
        ([{**_sample(), "image": torch.zeros(4, 128, 256)}], "(3, H, W)"),
        ([{**_sample(), "image": torch.zeros(128, 256)}], "(3, H, W)"),
        ([_sample(128, 128)], "2:1"),
        ([_sample(100, 256)], "2:1"),
        ([{**_sample(), "depth": torch.full((3, 128, 256), float("nan"))}], "NaN"),
        ([{**_sample(), "depth": torch.full((3, 128, 256), float("inf"))}], "NaN or infinite"),
        ([{**_sample(), "image": torch.zeros(3, 128, 256, dtype=torch.uint8)}], "float tensor"),
        ([{**_sample(), "image": torch.full((3, 128, 256), 300.0)}], "[0, 255]"),
        ([{**_sample(), "image": torch.full((3, 128, 256), -1.0)}], "[0, 255]"),
        ([{**_sample(), "normals": torch.zeros(3, 64, 128)}], "differs"),
        ([_sample(), "not a dict"], "image 1"),
    ],
)
def test_bad_inputs(dual, batch, message):
    with pytest.raises(InputError) as err:
        dual(batch)
    assert message in str(err.value)


def test_any_two_to_one_size_is_accepted_without_cropping(dual):
    base = golden_inputs("tiny-dual")
    big = {k: F.interpolate(v[None], scale_factor=2, mode="nearest")[0] for k, v in base.items()}
    small = {k: F.interpolate(v[None], size=(32, 64), mode="area")[0] for k, v in base.items()}
    with torch.no_grad():
        out_big, out_small = dual([big, small])
        (ref,) = dual([base])
    assert out_big["sem_preds"].shape == (5, 256, 512)
    assert out_small["sem_preds"].shape == (5, 32, 64)
    # The right half of a 2x image is not cropped away: its logits follow the reference ones.
    down = F.avg_pool2d(out_big["sem_preds"][None], 2)[0]
    agree = (down.argmax(0) == ref["sem_preds"].argmax(0)).float()
    assert agree[:, 128:].mean() > 0.9 and agree[:, :128].mean() > 0.9


def test_network_size_input_is_not_resized(dual):
    """At the network's own size nothing is resampled: the golden logits are kept exactly."""
    with torch.no_grad():
        (out,) = dual([golden_inputs("tiny-dual")])
    expected = torch.from_numpy(golden_expected("tiny-dual")["sem_preds"])
    assert torch.allclose(out["sem_preds"], expected, atol=1e-4)


def test_instances_need_the_mask_decoder(dual):
    with pytest.raises(ValueError, match="semantic_only"):
        dual([golden_inputs("tiny-dual")], semantic_only=False)


def _files(tmp_path):
    return write_hub_layout(tmp_path, "tiny-dual")


def test_truncated_safetensors(tmp_path):
    hub, sam, config = _files(tmp_path)
    file = hub / "tiny-dual" / "model.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_panosamic(hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam)


def test_garbage_safetensors(tmp_path):
    hub, sam, config = _files(tmp_path)
    (hub / "tiny-dual" / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_panosamic(hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam)


def test_truncated_sam_file(tmp_path):
    hub, sam, config = _files(tmp_path)
    sam.write_bytes(sam.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="could not be read"):
        load_panosamic(hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam)


def test_sam_file_of_the_wrong_size(tmp_path):
    hub, sam, config = _files(tmp_path)
    state = torch.load(sam, weights_only=True)
    state["image_encoder.pos_embed"] = torch.zeros(1, 8, 8, 64)
    del state["image_encoder.neck.3.bias"]
    torch.save(state, sam)
    with pytest.raises(CheckpointError) as err:
        load_panosamic(hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam)
    assert "image_encoder.neck.3.bias" in str(err.value) and "image_encoder.pos_embed" in str(
        err.value
    )


def test_pickled_code_is_refused(tmp_path):
    bad = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "hook": shutil.rmtree}, bad)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(bad)


def test_checkpoint_with_unexpected_tensor(tmp_path):
    hub, sam, config = _files(tmp_path)
    state = read_state_dict(hub / "tiny-dual" / "model.safetensors")
    state["feature_fuser.extra.weight"] = torch.zeros(2)
    from safetensors.torch import save_file

    save_file(state, hub / "tiny-dual" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"feature_fuser\.extra\.weight"):
        load_panosamic(hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 13}, "num_classes mismatch"),
        ({"modalities": ("image", "depth")}, "modalities mismatch"),
        ({"channel_attention": "fc"}, "channel attention mismatch"),
        ({"vit_model": "vit_b"}, "vit_model"),
    ],
)
def test_arguments_contradicting_the_checkpoint(tmp_path, kwargs, message):
    hub, sam, config = _files(tmp_path)
    data = json.loads(config.read_text())
    data.pop("modalities")
    if "vit_model" in kwargs:
        data.pop("encoder")
    config.write_text(json.dumps(data))
    with pytest.raises((CheckpointError, ValueError)) as err:
        load_panosamic(
            hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam, **kwargs
        )
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dual_view_fusion": False}, "dual_view_fusion"),
        ({"spatial_attention": None}, "spatial attention"),
        ({"channel_attention": None}, "channel attention"),
    ],
)
def test_config_contradicting_the_checkpoint(tmp_path, change, message):
    hub, sam, config = _files(tmp_path)
    config.write_text(json.dumps({**json.loads(config.read_text()), **change}))
    with pytest.raises(CheckpointError, match=message):
        load_panosamic(hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam)


def test_efficient_attention_flag_contradicting_the_checkpoint(tmp_path):
    hub, sam, config = _files(tmp_path)
    data = json.loads(config.read_text())
    data["channel_attention"]["efficient_attention"] = False
    config.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="efficient_attention"):
        load_panosamic(hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam)


def test_missing_subfolder_and_missing_sam_file(tmp_path):
    hub, sam, config = _files(tmp_path)
    with pytest.raises(FileNotFoundError, match="no sub-folder 'nope'"):
        load_panosamic(hub, subfolder="nope", config_path=config, sam_weights_path=sam)
    with pytest.raises(FileNotFoundError, match="neither a file nor a directory"):
        load_panosamic(
            hub,
            subfolder="tiny-dual",
            config_path=config,
            sam_weights_path=tmp_path / "missing.pth",
        )


def test_reference_training_checkpoint_loads(tmp_path):
    """A reference model_best.pth holds the full state dict: no SAM file needed for the semantic path."""
    hub, sam, config = _files(tmp_path)
    full = {
        **torch.load(sam, weights_only=True),
        **read_state_dict(hub / "tiny-dual" / "model.safetensors"),
    }
    run = tmp_path / "run"
    run.mkdir()
    torch.save(
        {"epoch": 3, "model": full, "best_miou": 0.5, "optimizer": {}, "lr_scheduler": None},
        run / "model_best.pth",
    )
    model = PanoSAMic.from_pretrained_panosamic(run, config_path=config, semantic_only=True)
    with torch.no_grad():
        (out,) = model([golden_inputs("tiny-dual")])
    expected = torch.from_numpy(golden_expected("tiny-dual")["sem_preds"])
    assert torch.allclose(out["sem_preds"], expected, atol=1e-4)


def test_config_resolution(tmp_path):
    hub, sam, _ = _files(tmp_path)
    with pytest.raises(FileNotFoundError, match="packaged configs"):
        load_panosamic(
            hub, subfolder="tiny-dual", config_path="config/nope.json", sam_weights_path=sam
        )
