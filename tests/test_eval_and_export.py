"""`panosamic evaluate` and `panosamic export` on a tiny trained run (lean checkpoints)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_standin import StandinPanoramas, standin_builder, tiny_config, write_config

import panosamic.data
from panosamic.cli import main
from panosamic.model import PanoSAMic
from panosamic.model.config import model_config_from_dict
from panosamic.model.panosamic import TRAINABLE_PREFIXES
from panosamic.train.checkpoint import BEST_NAME, load_checkpoint
from panosamic.weights import load_panosamic


@pytest.fixture(scope="module")
def standin_data():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(panosamic.data, "build_dataset", standin_builder(6, 3), raising=False)
        mp.setattr(
            panosamic.data,
            "DATASET_CLASS_NAMES",
            {"stanford2d3ds": StandinPanoramas.class_names},
            raising=False,
        )
        yield


@pytest.fixture(scope="module")
def lean_run(tmp_path_factory: pytest.TempPathFactory, standin_data) -> Path:
    """A run trained from a SAM-layout file: its checkpoints hold the trainable tensors only."""
    tmp = tmp_path_factory.mktemp("lean")
    config = write_config(tmp / "config_tiny.json")
    model = PanoSAMic(
        model_config_from_dict(tiny_config(), modalities="image,depth", num_classes=4),
        semantic_only=True,
    )
    frozen = {k: v for k, v in model.state_dict().items() if k.startswith("image_encoder.")}
    torch.save(frozen, tmp / "sam_tiny.pth")
    argv = [
        "train", "--dataset", "stanford2d3ds", "--dataset-path", str(tmp), "--config", str(config),
        "--modalities", "image,depth", "--sam-weights-path", str(tmp / "sam_tiny.pth"),
        "--epochs", "2", "--batch-size", "2", "--workers", "0", "--run-dir", str(tmp / "run"),
    ]  # fmt: skip
    assert main(argv) == 0
    return tmp / "run"


def test_lean_checkpoint_holds_only_trainable_tensors(lean_run: Path) -> None:
    ckpt = load_checkpoint(lean_run / BEST_NAME)
    assert ckpt["model_contents"] == "trainable"
    assert all(k.startswith(TRAINABLE_PREFIXES) for k in ckpt["model"])


def test_evaluate_a_run_writes_strict_json_and_pngs(
    lean_run: Path, tmp_path: Path, standin_data
) -> None:
    out = tmp_path / "eval.json"
    argv = [
        "evaluate", str(lean_run), "--output", str(out), "--workers", "0",
        "--edge-side-fracs", "0.25", "0.05", "--save-dir", str(tmp_path / "png"),
    ]  # fmt: skip
    assert main(argv) == 0
    text = out.read_text()
    assert "NaN" not in text
    report = json.loads(text)
    fold = report["folds"]["1"]
    history = json.loads((lean_run / "history.json").read_text())
    best = next(h for h in history if h["epoch"] == history[-1]["best_epoch"])
    assert fold["miou"] == pytest.approx(best["miou"], abs=1e-12)  # same counts as validation
    assert fold["epoch"] == best["epoch"] and fold["num_samples"] == 3
    assert set(fold["iou_per_class"]) == set(StandinPanoramas.class_names)
    assert set(fold["edge_metrics"]) == {"25pct_per_side", "5pct_per_side"}
    assert [f["sample"] for f in fold["frame_metrics"]] == [
        f"area_x/sample_{i:03d}" for i in range(3)
    ]
    assert "average" not in report

    png = np.asarray(Image.open(tmp_path / "png" / "fold_1" / "area_x" / "sample_000.png"))
    assert png.shape == (128, 256, 3)
    palette = StandinPanoramas.palette.numpy()
    assert {tuple(c) for c in png.reshape(-1, 3)} <= {tuple(c) for c in palette}


@pytest.fixture(scope="module")
def exported(lean_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hub") / "tiny-fold1" / "model.safetensors"
    assert main(["export", str(lean_run), str(out)]) == 0
    return out


def test_export_round_trip(exported: Path, lean_run: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(exported))
    trained = load_checkpoint(lean_run / BEST_NAME)["model"]
    assert tensors.keys() == trained.keys()
    assert all(torch.equal(tensors[k], trained[k]) for k in tensors)
    assert not list(exported.parent.parent.glob(".tmp-*"))
    sam = json.loads((lean_run / "run_config.json").read_text())["training"]["sam_weights_path"]
    model = load_panosamic(
        exported.parent.parent, subfolder="tiny-fold1", sam_weights_path=sam, semantic_only=True
    )
    assert model.config.modalities == ("image", "depth") and model.config.num_classes == 4
    reloaded = model.trainable_state_dict()
    assert all(torch.equal(reloaded[k], tensors[k]) for k in tensors)


def test_export_refuses_to_overwrite_and_reports_offline_upload(
    exported: Path, lean_run: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from safetensors.torch import load_file

    before = load_file(str(exported))
    assert main(["export", str(lean_run), str(exported), "--which", "last"]) == 2
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["export", str(lean_run), str(exported), "--overwrite", "--upload", "me/tiny"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and "hf upload me/tiny" in err
    after = load_file(str(exported))  # written again from best: the same tensors
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_TOKEN", "hf_test_not_a_token")
    assert main(argv) == 2
    assert "upload of" in capsys.readouterr().err


def test_multi_fold_evaluation_reports_each_fold_and_both_averages(
    exported: Path, lean_run: Path, tmp_path: Path, standin_data
) -> None:
    hub = exported.parent.parent
    shutil.copytree(exported.parent, hub / "tiny-fold2", dirs_exist_ok=True)
    sam = json.loads((lean_run / "run_config.json").read_text())["training"]["sam_weights_path"]
    out = tmp_path / "folds.json"
    argv = [
        "evaluate", str(hub), "--subfolder", "tiny-fold{fold}", "--folds", "1", "2",
        "--dataset", "stanford2d3ds", "--dataset-path", str(tmp_path),
        "--sam-weights-path", sam, "--output", str(out), "--workers", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    f1, f2 = report["folds"]["1"], report["folds"]["2"]
    assert f1["subfolder"] == "tiny-fold1" and f2["subfolder"] == "tiny-fold2"
    assert f1["miou"] != f2["miou"]  # different held-out samples per fold
    avg = report["average"]
    assert avg["folds"] == [1, 2]
    assert avg["mean_of_folds"]["miou"] == pytest.approx((f1["miou"] + f2["miou"]) / 2)
    inter = np.add(f1["counts"]["intersection"], f2["counts"]["intersection"])
    union = np.add(f1["counts"]["union"], f2["counts"]["union"])
    valid = union > 0
    assert avg["pooled"]["miou"] == pytest.approx(float(np.mean(inter[valid] / union[valid])))


def test_evaluate_the_last_checkpoint_of_a_run(
    lean_run: Path, tmp_path: Path, standin_data
) -> None:
    out = tmp_path / "last.json"
    assert (
        main(["evaluate", str(lean_run / "model_last.pth"), "--output", str(out), "--workers", "0"])
        == 0
    )
    fold = json.loads(out.read_text())["folds"]["1"]
    history = json.loads((lean_run / "history.json").read_text())
    assert fold["epoch"] == 2 and fold["miou"] == pytest.approx(history[-1]["miou"], abs=1e-12)


def test_evaluate_argument_errors(lean_run: Path, capsys, standin_data) -> None:
    assert main(["evaluate", str(lean_run), "--folds", "1", "2"]) == 2
    assert "one model per fold" in capsys.readouterr().err
    assert main(["evaluate", str(lean_run), "--fold", "2"]) == 2
    assert "trained on fold 1" in capsys.readouterr().err
    assert main(["evaluate", str(lean_run), "--edge-side-fracs", "0.6"]) == 2
    assert "between 0 and 0.5" in capsys.readouterr().err
