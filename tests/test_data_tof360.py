"""ToF-360: the raw layout, preparation with its own d_t, the label remap to Stanford2D3DS's
classes, bad folders naming the sample, and a Stanford2D3DS model evaluated on it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from panosamic.cli import main
from panosamic.data import build_dataset
from panosamic.data.catalog import STANFORD_CLASSES, TOF360_SCENES, dataset_info
from panosamic.data.colors import dataset_palette
from panosamic.data.labels import decode_tof360
from panosamic.data.prepare import output_size, prepare_dataset
from panosamic.data.stats import depth_thresholds, sum_area_histograms
from panosamic.data.synth import (
    expected_semantics,
    plan_samples,
    synthetic_sample,
    write_synthetic_dataset,
)

H, W, SEED, COUNT = 16, 32, 5, 5


def _prepare(raw: Path, out: Path) -> None:
    prepare_dataset("tof360", raw, out, workers=1, progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tof360")
    write_synthetic_dataset("tof360", root / "raw", COUNT, seed=SEED, height=H, width=W)
    _prepare(root / "raw", root / "prepared")
    return root / "prepared"


def test_labels_map_to_stanfords_classes():
    def cls(name: str) -> int:
        return STANFORD_CLASSES.index(name)

    expected = {
        0: -1, 33: -1, 34: -1, 1: cls("wall"), 40: cls("wall"), 2: cls("ceiling"),
        20: cls("ceiling"), 42: cls("ceiling"), 3: cls("floor"), 18: cls("floor"),
        4: cls("sofa"), 5: cls("chair"), 7: cls("door"), 8: cls("window"), 12: cls("table"),
        14: cls("column"), 17: cls("beam"), 26: cls("board"), 31: cls("bookcase"),
        6: cls("clutter"), 9: cls("clutter"), 41: cls("clutter"), 43: cls("clutter"),
        250: cls("clutter"), 1000: cls("clutter"),
    }  # fmt: skip
    raw = np.array(list(expected), dtype=np.uint16).reshape(5, 5)
    np.testing.assert_array_equal(decode_tof360(raw).ravel(), list(expected.values()))
    with pytest.raises(ValueError, match="ids >= 0"):
        decode_tof360(np.array([[-1, 2]]))


def test_the_raw_layout_is_tof360s(tmp_path, capsys):
    argv = ["synth", "--dataset", "tof360", "--out", str(tmp_path), "--count", "4", "--seed", "1"]
    assert main([*argv, "--height", str(H), "--workers", "1", "--no-progress"]) == 0
    assert "wrote 4 synthetic tof360 panoramas" in capsys.readouterr().out
    plan = plan_samples("tof360", 4, 1)
    assert [s.location for s in plan] == list(TOF360_SCENES)
    for s in plan:
        stem = f"{s.name}_{s.location}_equi"
        scene = tmp_path / s.location
        depth = Image.open(scene / "depth" / f"{stem}_depth.png")
        assert depth.mode == "I;16" and depth.size == (W, H)
        assert Image.open(scene / "RGB" / f"{stem}_rgb.png").size == (W, H)
        assert Image.open(scene / "normal" / f"{stem}_normal.png").mode == "RGB"
        ids = np.load(scene / "semantics" / f"{stem}_semantic.npy")
        assert ids.shape == (H, W) and np.issubdtype(ids.dtype, np.integer)
        truth = synthetic_sample("tof360", 1, s.index, H, W)
        np.testing.assert_array_equal(decode_tof360(ids), expected_semantics("tof360", truth))
        metres = np.asarray(depth, dtype=np.float64) / 512  # 1/512 m, 0 = no reading
        np.testing.assert_allclose(metres[truth.valid], truth.depth[truth.valid], atol=1 / 1024)
        assert (np.asarray(depth)[~truth.valid] == 0).all()
    assert output_size(5792, 2896, None) == (1024, 512)  # the raw size, prepared by default


def test_preparation_writes_d_t_from_all_scenes(prepared):
    stats = json.loads((prepared / "cache_area_depth_statistics.json").read_text())
    assert sorted(stats) == sorted(TOF360_SCENES)
    counts, edges = sum_area_histograms(stats, TOF360_SCENES)
    assert len(counts) == 1280 and edges[1] == pytest.approx(0.1)  # 0.1 m bins
    thresholds = json.loads((prepared / "cache_splits_depth_statistics.json").read_text())
    assert thresholds == depth_thresholds(counts, edges) and len(thresholds) == 6
    colors = np.load(prepared / "assets" / "colors.npy")
    assert colors.shape == (14, 3) and (colors[0] == 0).all()
    np.testing.assert_array_equal(colors[1:], dataset_palette("stanford2d3ds"))


def test_the_one_fold_evaluates_every_scene_as_stanford_classes(prepared):
    ds = build_dataset("tof360", prepared, fold=1, split="eval")
    assert len(ds) == COUNT and ds.class_names == STANFORD_CLASSES and ds.mask_black
    assert {ds.sample_name(i).split("/")[0] for i in range(len(ds))} == set(TOF360_SCENES)
    thresholds = json.loads((prepared / "cache_splits_depth_statistics.json").read_text())
    assert ds.depth_threshold == thresholds[3]  # ratio 0.995
    plan = plan_samples("tof360", COUNT, SEED)
    for i in range(len(ds)):
        data, labels = ds.load(i)
        s = next(p for p in plan if f"{p.location}/{p.name}" == ds.sample_name(i))
        truth = synthetic_sample("tof360", SEED, s.index, H, W)
        expected = expected_semantics("tof360", truth)
        expected = np.where(data["image"].sum(0).numpy() == 0, -1, expected)
        np.testing.assert_array_equal(labels["semantics"][0].numpy(), expected)
        d_t = ds.depth_threshold
        disparity = (1 - np.minimum(truth.depth, d_t) / d_t) * truth.valid * 255
        np.testing.assert_allclose(data["depth"][0].numpy(), disparity, atol=255 / 512 / d_t)
        assert data["normals"].shape == (3, H, W)
    with pytest.raises(ValueError, match="folds"):
        build_dataset("tof360", prepared, fold=2, split="eval")
    with pytest.warns(UserWarning, match="for evaluation"):
        build_dataset("tof360", prepared, split="train")
    assert dataset_info("tof360").evaluation_only


def test_a_missing_modality_or_size_names_the_sample(tmp_path, capsys):
    raw = tmp_path / "raw"
    a, b, c = write_synthetic_dataset("tof360", raw, 3, seed=2, height=H, width=W)
    (raw / a.location / "depth" / f"{a.name}_{a.location}_equi_depth.png").unlink()
    normal = raw / b.location / "normal" / f"{b.name}_{b.location}_equi_normal.png"
    Image.new("RGB", (2 * W, 2 * H)).save(normal)
    (raw / c.location / "RGB" / f"{c.name}_{c.location}_equi_rgb.png").unlink()
    with pytest.raises(RuntimeError) as err:
        _prepare(raw, tmp_path / "out")
    lines = str(err.value).splitlines()
    assert lines[0].startswith("3 of 3 samples failed")
    assert lines[1].strip().startswith(f"sample {a.location}/{a.name}: its depth file")
    assert lines[2].strip().startswith(f"sample {b.location}/{b.name}: inputs differ in size")
    assert lines[3].strip().startswith(f"sample {c.location}/{c.name}: its rgb file")
    # the same through the command line: exit 2 and the samples named
    assert main(["prepare", "tof360", str(raw), str(tmp_path / "o"), "--workers", "1"]) == 2
    assert f"sample {a.location}/{a.name}: its depth file" in capsys.readouterr().err


def _tiny_stanford_checkpoint(root: Path) -> tuple[Path, Path]:
    """A random tiny RGB-D Stanford2D3DS model in the Hub layout, and its SAM file."""
    from panosamic.model import PanoSAMic
    from panosamic.model.config import load_config_json, model_config_from_dict

    torch.manual_seed(0)
    config = model_config_from_dict(
        load_config_json("config/config_tiny_debug.json"),
        modalities=("image", "depth"),
        num_classes=13,
    )
    model = PanoSAMic(config, semantic_only=True)
    (root / "hub" / "tiny-rgbd-fold1").mkdir(parents=True)
    save_file(
        {k: v.contiguous() for k, v in model.trainable_state_dict().items()},
        root / "hub" / "tiny-rgbd-fold1" / "model.safetensors",
    )
    sam = root / "sam_tiny.pth"
    torch.save({k: v for k, v in model.state_dict().items() if k.startswith("image_encoder.")}, sam)
    return root / "hub", sam


def test_evaluate_a_stanford_model_zero_shot(prepared, tmp_path, capsys):
    hub, sam = _tiny_stanford_checkpoint(tmp_path)
    out = tmp_path / "tof360.json"
    argv = [
        "evaluate", str(hub), "--variant", "tiny-rgbd-fold1", "--config",
        "config/config_tiny_debug.json", "--sam-weights-path", str(sam), "--dataset", "tof360",
        "--dataset-path", str(prepared), "--fold", "1", "--workers", "0", "--output", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    fold = report["folds"]["1"]
    assert report["class_names"] == list(STANFORD_CLASSES) and fold["num_samples"] == COUNT
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = build_dataset("tof360", prepared, split="eval", modalities=("image", "depth"))
    labelled = sum(int((ds.load(i)[1]["semantics"] >= 0).sum()) for i in range(len(ds)))
    assert sum(fold["counts"]["target"]) == labelled > 0
    assert 0 <= fold["miou"] <= 1
