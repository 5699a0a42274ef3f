"""The training loop on the tiny model and synthetic panoramas: learning, checkpoints, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from train_helpers import synthetic_stanford, write_config

from panosamic.data import build_dataset
from panosamic.evaluation.evaluator import evaluate_model
from panosamic.hub.locate import BEST_NAME, LAST_NAME, RUN_CONFIG_NAME
from panosamic.model import PanoSAMic
from panosamic.model.config import PanoSAMicConfig, with_channel_attention
from panosamic.train.checkpoint import load_checkpoint
from panosamic.train.options import options_from_values
from panosamic.train.runs import read_run_config, resolve_options
from panosamic.train.runtime import seed_everything
from panosamic.train.trainer import run_training
from panosamic.utils.distributed import DistContext


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_stanford(tmp_path_factory.mktemp("synth"))


def _options(tmp_path: Path, prepared: Path, **changes):
    config = write_config(tmp_path / "config_tiny.json", **changes.pop("config_kwargs", {}))
    values = {
        "dataset": "stanford2d3ds",
        "dataset_path": str(prepared),
        "config": str(config),
        "modalities": "image,depth",
        "epochs": 2,
        "batch_size": 2,
        "random_sam": True,
        "workers": 0,
        "seed": 0,
        "deterministic": True,
        "run_dir": str(tmp_path / "run"),
    }
    values.update(changes)
    return options_from_values(values)


def test_tiny_model_learns_and_selects_the_best_epoch(tmp_path: Path, prepared: Path) -> None:
    run = run_training(_options(tmp_path, prepared, epochs=3, deterministic=False))

    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    best = max(history, key=lambda h: h["miou"])
    assert history[-1]["best_epoch"] == best["epoch"]
    assert load_checkpoint(run / BEST_NAME)["epoch"] == best["epoch"]
    assert load_checkpoint(run / LAST_NAME)["epoch"] == 3

    # the same initial model (same seed, the run's random frozen weights), before training
    cfg = PanoSAMicConfig.from_dict(read_run_config(run)["model"])
    seed_everything(0)
    initial = PanoSAMic(cfg, semantic_only=True)
    held_out = build_dataset("stanford2d3ds", prepared, split="eval", modalities=cfg.modalities)
    before = evaluate_model(initial, held_out, ctx=DistContext()).scores().miou
    assert best["miou"] > 2 * before and best["miou"] > before + 0.05, (before, best["miou"])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run)).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"Loss/train", "Learning Rate", "mIoU", "mAcc", "Loss/validation"} <= scalars
    assert [e.step for e in events.Scalars("Loss/train")] == [5, 10, 15]  # every 5 of 3 x 5 steps
    assert [e.step for e in events.Scalars("mIoU")] == [1, 2, 3]


class CrashingBuilder:
    """The real datasets; the training split fails on the n-th sample it loads."""

    def __init__(self, crash_after: int | None) -> None:
        self.crash_after = crash_after

    def __call__(self, name, root, *, split="train", **kwargs):
        ds = build_dataset(name, root, split=split, **kwargs)
        return (
            ds if split != "train" or self.crash_after is None else _Crashing(ds, self.crash_after)
        )


class _Crashing(torch.utils.data.Dataset):
    def __init__(self, ds, crash_after: int) -> None:
        self.ds, self.left = ds, crash_after
        self.class_names, self.num_classes = ds.class_names, ds.num_classes

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("simulated crash")
        return self.ds[i]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory: pytest.TempPathFactory, prepared: Path) -> Path:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    return run_training(_options(tmp, prepared, epochs=2), CrashingBuilder(None))


@pytest.mark.parametrize("checkpoint_every", [0, 1])
def test_resume_after_a_crash_gives_the_same_weights(
    tmp_path: Path, prepared: Path, uninterrupted_run: Path, checkpoint_every: int
) -> None:
    """Crash in epoch 2 (after an epoch-end or a mid-epoch checkpoint), resume, compare.

    10 training samples, batch 2: 5 steps per epoch; the crash comes at the
    6th sample of epoch 2, inside its third batch.
    """
    crashing = _options(tmp_path, prepared, epochs=2, checkpoint_every=checkpoint_every)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(crashing, CrashingBuilder(crash_after=10 + 5))
    saved = load_checkpoint(tmp_path / "run" / LAST_NAME)
    assert (saved["epoch"], saved["batches_done"]) == ((1, 2) if checkpoint_every else (1, 0))

    resumed = options_from_values(
        {"resume": "last", "run_dir": str(tmp_path / "run")},
        read_run_config(tmp_path / "run")["training"]["options"],
    )
    run_training(resumed, CrashingBuilder(None))
    a = load_checkpoint(uninterrupted_run / LAST_NAME)["model"]
    b = load_checkpoint(tmp_path / "run" / LAST_NAME)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


def test_resume_refuses_changed_settings(tmp_path: Path, prepared: Path) -> None:
    saved = _options(tmp_path, prepared).to_dict()
    with pytest.raises(ValueError, match="batch_size: run has 2, command line 4"):
        options_from_values({"resume": "last", "batch_size": 4}, saved)
    ok = options_from_values({"resume": "last", "workers": 3, "batch_size": 2}, saved)
    assert ok.workers == 3 and ok.epochs == 2


def test_scheduled_loss_accumulation_and_bf16_run(tmp_path: Path, prepared: Path) -> None:
    loss = {"CrossEntropyLoss": 1, "JaccardLoss": 1, "ScheduledLoss": {}}
    run = run_training(
        _options(
            tmp_path,
            prepared,
            epochs=1,
            batch_size=3,
            grad_accum=2,
            precision="bf16",
            gradient_checkpointing=True,
            select_on="last",
            full_checkpoints=True,
            channel_attention="fc",
            config_kwargs={"loss": loss, "dual_view": False},
        )
    )
    run_config = read_run_config(run)
    assert run_config["model"]["channel_attention"]["efficient_attention"] is False  # the MLP
    plan = run_config["training"]["lr_plan"]
    assert plan["steps_per_epoch"] == 2  # 3 micro-batches of 3 (10 samples) in groups of 2
    assert plan["total_batch"] == 6 and plan["max_lr_eff"] == pytest.approx(5e-3 * 6 / 4)
    last = load_checkpoint(run / LAST_NAME)
    assert last["global_step"] == 2 and last["model_contents"] == "full"
    assert any(k.startswith("image_encoder.") for k in last["model"])
    history = json.loads((run / "history.json").read_text())
    assert math.isfinite(history[0]["train_loss"]) and math.isfinite(history[0]["val_loss"])


def test_run_directory_naming_and_refusing_to_overwrite(tmp_path: Path, prepared: Path) -> None:
    opts = _options(
        tmp_path,
        prepared,
        epochs=1,
        batch_size=5,
        run_dir=None,
        select_on="none",
        experiments_path=str(tmp_path / "exp"),
    )
    run = run_training(opts)
    assert run.parent == tmp_path / "exp" / "stanford2d3ds"
    assert run.name.endswith("_config_tiny_F1_Vc_M2")
    assert (run / RUN_CONFIG_NAME).is_file() and (run / BEST_NAME).is_file()
    assert math.isnan(load_checkpoint(run / BEST_NAME)["miou"])
    with pytest.raises(ValueError, match="not empty"):
        run_training(_options(tmp_path, prepared, run_dir=str(run)))

    # the reference's way to resume: the newest run of the experiment ID under the root
    values = {
        "resume": "last",
        "dataset": "stanford2d3ds",
        "config": str(tmp_path / "config_tiny.json"),
        "modalities": "image,depth",
        "experiments_path": str(tmp_path / "exp"),
    }
    resolved = resolve_options(values)
    assert resolved.run_dir == str(run) and resolved.batch_size == 5
    with pytest.raises(FileNotFoundError, match="no run"):
        resolve_options({**values, "modalities": "image"})


def test_channel_attention_switch() -> None:
    config = {"channel_attention": {"window_size": 8}, "loss": {}}
    assert with_channel_attention(config, "eca")["channel_attention"]["efficient_attention"]
    assert not with_channel_attention(config, "fc")["channel_attention"]["efficient_attention"]
    with pytest.raises(ValueError, match="'eca' or 'fc'"):
        with_channel_attention(config, "mlp")
    with pytest.raises(ValueError, match="no channel attention"):
        with_channel_attention({"channel_attention": None}, "eca")
