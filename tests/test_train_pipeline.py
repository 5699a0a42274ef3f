"""The newcomer's first run, end to end on the command line: synth -> prepare -> train -> evaluate -> export."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from panosamic.cli import main
from panosamic.hub.locate import BEST_NAME
from panosamic.train.checkpoint import load_checkpoint
from panosamic.weights import load_panosamic


def test_synth_prepare_train_evaluate_export(tmp_path: Path) -> None:
    raw, prepared, run = tmp_path / "raw", tmp_path / "prepared", tmp_path / "runs" / "tiny"
    synth = ["synth", "--dataset", "stanford2d3ds", "--out", str(raw), "--count", "14",
             "--height", "128", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main(synth) == 0
    assert (
        main(
            ["prepare", "stanford2d3ds", str(raw), str(prepared), "--workers", "1", "--no-progress"]
        )
        == 0
    )

    train = [
        "train", "--dataset", "stanford2d3ds", "--dataset-path", str(prepared),
        "--config", "config/config_tiny_debug.json", "--random-sam", "--modalities", "image,depth",
        "--epochs", "2", "--batch-size", "2", "--workers", "1", "--run-dir", str(run),
    ]  # fmt: skip
    assert main(train) == 0
    run_config = json.loads((run / "run_config.json").read_text())
    assert run_config["dataset"]["train_samples"] == 10  # areas 1, 2, 3, 4, 6 of 14 samples
    assert run_config["dataset"]["eval_samples"] == 4  # areas 5a, 5b
    assert run_config["model"]["encoder"]["embed_dim"] == 64
    assert run_config["dataset"]["depth_threshold"] > 0

    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--output", str(out), "--save-dir", str(tmp_path / "vis"),
                 "--workers", "0"]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    fold = report["folds"]["1"]
    assert fold["num_samples"] == 4 and len(fold["iou_per_class"]) == 13
    assert 0.0 <= fold["miou"] <= 1.0
    first = fold["frame_metrics"][0]["sample"]
    assert first.startswith("area_5") and (tmp_path / "vis" / "fold_1" / f"{first}.png").is_file()
    assert Image.open(tmp_path / "vis" / "fold_1" / f"{first}.png").size == (256, 128)

    exported = tmp_path / "hub" / "tiny-rgbd-fold1" / "model.safetensors"
    assert main(["export", str(run), str(exported)]) == 0
    # random SAM weights are no official file: the export carries them, and loads without arguments
    assert (exported.parent / "sam_weights.pth").is_file()
    model = load_panosamic(tmp_path / "hub", subfolder="tiny-rgbd-fold1", semantic_only=True)
    trained = load_checkpoint(run / BEST_NAME)["model"]
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
