"""`panosamic evaluate` and `panosamic export` on a tiny trained run (lean checkpoints)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import synthetic_stanford, write_config, write_tiny_sam_file

from panosamic.cli import main
from panosamic.data import DATASET_CLASS_NAMES, build_dataset
from panosamic.hub.locate import BEST_NAME
from panosamic.model.panosamic import TRAINABLE_PREFIXES
from panosamic.train.checkpoint import load_checkpoint
from panosamic.weights import load_panosamic
from tests.conftest import set_hub_offline


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_stanford(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def lean_run(tmp_path_factory: pytest.TempPathFactory, prepared: Path) -> Path:
    """A run trained from a SAM-layout file: its checkpoints hold the trainable tensors only."""
    tmp = tmp_path_factory.mktemp("lean")
    config = write_config(tmp / "config_tiny.json")
    sam = write_tiny_sam_file(tmp / "sam_tiny.pth")
    argv = [
        "train", "--dataset", "stanford2d3ds", "--dataset-path", str(prepared), "--config", str(config),
        "--modalities", "image,depth", "--sam-weights-path", str(sam),
        "--epochs", "2", "--batch-size", "5", "--workers", "0", "--run-dir", str(tmp / "run"),
    ]  # fmt: skip
    assert main(argv) == 0
    return tmp / "run"


def test_lean_checkpoint_holds_only_trainable_tensors(lean_run: Path) -> None:
    ckpt = load_checkpoint(lean_run / BEST_NAME)
    assert ckpt["model_contents"] == "trainable"
    assert all(k.startswith(TRAINABLE_PREFIXES) for k in ckpt["model"])


def test_evaluate_a_run_writes_strict_json_and_pngs(
    lean_run: Path, tmp_path: Path, prepared: Path
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
    held_out = build_dataset("stanford2d3ds", prepared, split="eval", modalities=("image", "depth"))
    assert fold["epoch"] == best["epoch"] and fold["num_samples"] == len(held_out) == 4
    assert list(fold["iou_per_class"]) == list(DATASET_CLASS_NAMES["stanford2d3ds"])
    assert set(fold["edge_metrics"]) == {"25pct_per_side", "5pct_per_side"}
    names = [held_out.sample_name(i) for i in range(4)]
    assert [f["sample"] for f in fold["frame_metrics"]] == names
    assert "average" not in report

    png = np.asarray(Image.open(tmp_path / "png" / "fold_1" / f"{names[0]}.png"))
    assert png.shape == (128, 256, 3)
    palette = np.asarray(held_out.palette)
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
    assert model.config.modalities == ("image", "depth") and model.config.num_classes == 13
    reloaded = model.trainable_state_dict()
    assert all(torch.equal(reloaded[k], tensors[k]) for k in tensors)


def test_export_refuses_to_overwrite_and_reports_offline_upload(
    exported: Path, lean_run: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from safetensors.torch import load_file

    before = load_file(str(exported))
    assert main(["export", str(lean_run), str(exported), "--which", "last"]) == 2
    assert "already exists" in capsys.readouterr().err
    set_hub_offline(monkeypatch, True)
    argv = ["export", str(lean_run), str(exported), "--overwrite", "--upload", "me/tiny"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and "hf upload me/tiny" in err
    after = load_file(str(exported))  # written again from best: the same tensors
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)
    set_hub_offline(monkeypatch, False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_TOKEN", "hf_test_not_a_token")
    assert main(argv) == 2
    assert "upload of" in capsys.readouterr().err


def test_multi_fold_evaluation_reports_each_fold_and_both_averages(
    exported: Path, lean_run: Path, tmp_path: Path, prepared: Path
) -> None:
    hub = exported.parent.parent
    shutil.copytree(exported.parent, hub / "tiny-fold2", dirs_exist_ok=True)
    sam = json.loads((lean_run / "run_config.json").read_text())["training"]["sam_weights_path"]
    out = tmp_path / "folds.json"
    argv = [
        "evaluate", str(hub), "--subfolder", "tiny-fold{fold}", "--folds", "1", "2",
        "--dataset", "stanford2d3ds", "--dataset-path", str(prepared),
        "--sam-weights-path", sam, "--output", str(out), "--workers", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    f1, f2 = report["folds"]["1"], report["folds"]["2"]
    assert f1["subfolder"] == "tiny-fold1" and f2["subfolder"] == "tiny-fold2"
    assert f1["num_samples"] == 4 and f2["num_samples"] == 4  # areas 5a+5b / areas 2+4
    assert f1["frame_metrics"] != f2["frame_metrics"]
    avg = report["average"]
    assert avg["folds"] == [1, 2]
    assert avg["mean_of_folds"]["miou"] == pytest.approx((f1["miou"] + f2["miou"]) / 2)
    inter = np.add(f1["counts"]["intersection"], f2["counts"]["intersection"])
    union = np.add(f1["counts"]["union"], f2["counts"]["union"])
    valid = union > 0
    assert avg["pooled"]["miou"] == pytest.approx(float(np.mean(inter[valid] / union[valid])))


def test_evaluate_the_last_checkpoint_of_a_run(lean_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "last.json"
    assert (
        main(["evaluate", str(lean_run / "model_last.pth"), "--output", str(out), "--workers", "0"])
        == 0
    )
    fold = json.loads(out.read_text())["folds"]["1"]
    history = json.loads((lean_run / "history.json").read_text())
    assert fold["epoch"] == 2 and fold["miou"] == pytest.approx(history[-1]["miou"], abs=1e-12)


def test_evaluate_argument_errors(lean_run: Path, capsys) -> None:
    assert main(["evaluate", str(lean_run), "--folds", "1", "2"]) == 2
    assert "one model per fold" in capsys.readouterr().err
    assert main(["evaluate", str(lean_run), "--fold", "2"]) == 2
    assert "trained on fold 1" in capsys.readouterr().err
    assert main(["evaluate", str(lean_run), "--edge-side-fracs", "0.6"]) == 2
    assert "between 0 and 0.5" in capsys.readouterr().err


class _MaskedModel(torch.nn.Module):
    """Predicts class 0 everywhere and reports one instance mask: the left half."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Config", (), {"modalities": ("image",)})()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        outputs = []
        for sample in batch:
            h, w = sample["image"].shape[-2:]
            logits = torch.zeros(13, h, w)
            logits[0] = 1.0
            mask = torch.zeros(h, w, dtype=torch.bool)
            mask[:, : w // 2] = True
            outputs.append({"sem_preds": logits, "instance_masks": [{"segmentation": mask}]})
        return outputs


def test_refine_flag_replaces_the_semantic_map(
    prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring of --refine: every output with masks goes through the refinement function."""
    from panosamic.evaluation import evaluator
    from panosamic.utils.distributed import DistContext

    calls = []

    def fake_refine(sem_preds, masks):  # class 1 inside the masks
        calls.append(len(masks))
        refined = sem_preds.clone()
        refined[1][masks[0]["segmentation"]] = 2.0
        return refined

    monkeypatch.setattr(evaluator, "refine_semantic_with_instances", fake_refine)
    held_out = build_dataset("stanford2d3ds", prepared, split="eval", modalities=("image",))
    plain = evaluator.evaluate_model(_MaskedModel(), held_out, ctx=DistContext())
    refined = evaluator.evaluate_model(_MaskedModel(), held_out, ctx=DistContext(), refine=True)
    assert calls == [1] * 4
    assert plain.counts[1, 1] == 0  # output histogram: nothing predicted as class 1 ...
    assert refined.counts[1, 1] == 4 * 128 * 128 - refined_ignored(held_out)  # ... then half of it
    assert refined.counts[2].tolist() == plain.counts[2].tolist()  # same labels


def refined_ignored(dataset) -> int:
    """Ignored pixels in the left halves (they count in no histogram)."""
    total = 0
    for i in range(len(dataset)):
        sem = dataset[i][1]["semantics"][0]
        total += int((sem[:, : sem.shape[1] // 2] == -1).sum())
    return total
