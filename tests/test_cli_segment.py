"""`panosamic segment`: files in, pictures out, same labels as the Python API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from panosamic.cli import main
from panosamic.weights import load_panosamic
from tests.conftest import golden_inputs, set_hub_offline, write_hub_layout


def write_panorama_files(root, name: str):
    """The fixture's inputs as the files a user has: PNGs and a depth map in millimetres."""
    hub, sam, config = write_hub_layout(root, name)
    inputs = golden_inputs(name)
    as_uint8 = {
        k: v.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        for k, v in inputs.items()
    }
    Image.fromarray(as_uint8["image"]).save(root / "pano.png")
    Image.fromarray(as_uint8["normals"]).save(root / "normals.png")
    # depth in millimetres whose pseudo-disparity (d_t = 8 m) is the fixture's depth channel
    metres = (1 - as_uint8["depth"][..., 0].astype(np.float64) / 255) * 8.0
    np.save(root / "depth.npy", metres * 1000)
    return root, hub, sam, config


def api_inputs(root) -> dict[str, torch.Tensor]:
    """What the CLI feeds the model for the files of :func:`write_panorama_files`."""
    image = torch.from_numpy(np.array(Image.open(root / "pano.png"))).permute(2, 0, 1).float()
    normals = torch.from_numpy(np.array(Image.open(root / "normals.png"))).permute(2, 0, 1).float()
    depth = np.load(root / "depth.npy") / 1000
    disparity = (1 - np.clip(depth, 0, 8) / 8) * 255 * (depth > 0)  # zero depth counts as missing
    disparity = torch.from_numpy(disparity).float().expand(3, -1, -1)
    return {"image": image, "depth": disparity, "normals": normals}


def file_args(root) -> list[str]:
    depth = ["--depth", str(root / "depth.npy"), "--depth-scale", "1000", "--depth-max", "8"]
    return [str(root / "pano.png"), *depth, "--normals", str(root / "normals.png")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_panorama_files(tmp_path_factory.mktemp("segment"), "tiny-dual")


def test_segment_writes_pictures_matching_the_api(files, tmp_path):
    root, hub, sam, config = files
    out = tmp_path / "out"
    args = [
        "segment",
        *file_args(root),
        "--checkpoint",
        str(hub),
        "--variant",
        "tiny-dual",
        "--config",
        str(config),
        "--sam-weights",
        str(sam),
        "--no-instances",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    for kind in ("labels", "color", "overlay", "panel"):
        assert (out / "pano" / f"{kind}.png").is_file()
    assert not (out / "pano" / "instances.png").exists()  # no masks without the instance path
    labels = np.asarray(Image.open(out / "pano" / "labels.png"))
    assert labels.shape == (128, 256)

    model = load_panosamic(
        hub, subfolder="tiny-dual", config_path=config, sam_weights_path=sam, semantic_only=True
    )
    with torch.no_grad():
        (expected,) = model([api_inputs(root)])
    assert (labels == expected["sem_preds"].argmax(0).numpy()).mean() > 0.999
    summary = json.loads((out / "pano" / "summary.json").read_text())
    assert abs(sum(summary["classes"].values()) - 1) < 1e-6 and summary["size"] == [128, 256]
    assert summary["model"]["variant"] == "tiny-dual" and summary["depth_max"] == 8.0
    panel = Image.open(out / "pano" / "panel.png")
    assert panel.width == 256 and panel.height > 5 * 128  # input, depth, normals, classes, overlay


@pytest.mark.parametrize("refine", [True, False])
def test_segment_with_instances_refines_like_the_api(tmp_path, refine):
    root, hub, sam, config = write_panorama_files(tmp_path, "tiny-instances")
    out = tmp_path / "out"
    args = ["segment", *file_args(root), "--checkpoint", str(hub), "--variant", "tiny-instances"]
    args += ["--config", str(config), "--sam-weights", str(sam), "--out", str(out), "--quiet"]
    args += ["--point-grid", "image", "--instance-modalities", "image", "depth"]
    assert main(args if refine else [*args, "--no-refine", "--exact-decoder"]) == 0

    model = load_panosamic(
        hub, subfolder="tiny-instances", config_path=config, sam_weights_path=sam
    )
    decoder = "factored" if refine else "exact"
    model.set_amg(point_grid="image", modalities=("image", "depth"), decoder=decoder)
    with torch.no_grad():
        (expected,) = model([api_inputs(root)], refine=True)
    assert expected["instance_masks"], "the fixture should give instance masks"
    changed = expected["labels"] != expected["sem_preds"].argmax(0)
    assert changed.any(), "the refinement should change some labels, or both runs look alike"
    want = expected["labels"] if refine else expected["sem_preds"].argmax(0)
    labels = np.asarray(Image.open(out / "pano" / "labels.png"))
    np.testing.assert_array_equal(labels, want.numpy())
    summary = json.loads((out / "pano" / "summary.json").read_text())
    assert summary["instance_masks"] == len(expected["instance_masks"])
    assert summary["refined_with_instances"] is refine
    picture = np.asarray(Image.open(out / "pano" / "instances.png"))
    assert picture.shape[:2] == labels.shape


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        ([], 1, "missing ['depth', 'normals']"),  # the panorama fails, the run reports it
        (["--depth", "x.npy"], 2, "its depth file x.npy is missing"),  # nothing left to do
    ],
)
def test_segment_input_errors(files, tmp_path, capsys, extra, code, message):
    root, hub, sam, config = files
    args = [
        "segment",
        str(root / "pano.png"),
        "--checkpoint",
        str(hub),
        "--variant",
        "tiny-dual",
        "--config",
        str(config),
        "--sam-weights",
        str(sam),
        "--no-instances",
        "--out",
        str(tmp_path),
        *extra,
    ]
    assert main(args) == code
    assert message in capsys.readouterr().err


def test_segment_demo_offline_says_what_to_download(tmp_path, monkeypatch, capsys):
    set_hub_offline(monkeypatch, True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    assert main(["segment", "--demo", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    # every missing file, and the command-line way to provide it
    assert "panosamic weights hub stanford2d3ds-vitb-rgbdn-fold1" in err
    assert "sam_vit_b_01ec64.pth" in err and "--sam-weights-path" in err
