# PENDING: rename to tests/test_eval_refine.py once the instance path (branch `instances`,
# panosamic.model.instance_semantic_fusion) is on main. Verified against `train` + `instances`
# merged: passes in ~3 s. Not collected by pytest under this name.
"""`panosamic evaluate --refine` with the real SAM instance path on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_helpers import write_config

from panosamic.cli import main
from panosamic.data import build_dataset, make_prepared_dataset
from panosamic.evaluation.metrics import confusion_counts
from panosamic.weights import load_panosamic

# the golden fixture's tiny SAM: its mask decoder is scaled so that masks pass SAM's filters
TUNED_SAM = Path(__file__).parent / "data" / "golden" / "tiny-instances" / "sam_tiny.pth"
PROMPT_DECODER = {"mlp_dim": 64, "num_heads": 4, "iou_head_hidden_dim": 32}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Single view, RGB only, 3 panoramas: areas 1 and 2 to train on, area 5a held out."""
    tmp = tmp_path_factory.mktemp("refine")
    prepared = make_prepared_dataset(
        "stanford2d3ds", tmp / "synth", count=3, seed=0, height=128, width=256
    )
    config_path = write_config(tmp / "config_tiny_sv.json", dual_view=False)
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "prompt_decoder": PROMPT_DECODER}))
    argv = [
        "train", "--dataset", "stanford2d3ds", "--dataset-path", str(prepared),
        "--config", str(config_path), "--sam-weights-path", str(TUNED_SAM), "--modalities", "image",
        "--epochs", "1", "--batch-size", "2", "--workers", "0", "--run-dir", str(tmp / "run"),
    ]  # fmt: skip
    assert main(argv) == 0
    return tmp / "run", prepared


def test_refine_relabels_each_instance_with_its_majority_class(
    small_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from panosamic.model.instance_semantic_fusion import refine_semantic_with_instances

    run, prepared = small_run
    reports = {}
    for name, extra in (("plain", []), ("refined", ["--refine"])):
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", str(run), "--output", str(out), "--workers", "0", *extra]) == 0
        reports[name] = json.loads(out.read_text())["folds"]["1"]
    assert json.loads((tmp_path / "refined.json").read_text())["refine"] is True

    # the first held-out panorama, refined by hand with the model's own masks
    model = load_panosamic(run, semantic_only=False, sam_weights_path=TUNED_SAM)
    held_out = build_dataset("stanford2d3ds", prepared, split="eval", modalities=("image",))
    data, labels = held_out[0]
    with torch.no_grad():
        out = model([{"image": data["image"]}])[0]
    assert out["instance_masks"], "the tuned SAM decoder should find instances"
    plain = out["sem_preds"].argmax(0)
    refined = refine_semantic_with_instances(out["sem_preds"], out["instance_masks"]).argmax(0)
    assert not torch.equal(plain, refined)
    counts = confusion_counts(refined, labels["semantics"][0], held_out.num_classes)
    inter, output, target = counts.double()
    iou = inter / (output + target - inter)
    expected = float(iou[~torch.isnan(iou)].mean())
    frame = reports["refined"]["frame_metrics"][0]
    assert frame["sample"] == held_out.sample_name(0)
    assert frame["miou"] == pytest.approx(expected, abs=1e-12)
    assert reports["refined"]["counts"] != reports["plain"]["counts"]
