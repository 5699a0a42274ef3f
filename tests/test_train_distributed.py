"""Separate processes: two-process gloo training under torchrun; SIGKILL and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import synthetic_stanford, write_config

from panosamic.data import build_dataset
from panosamic.evaluation.evaluator import evaluate_model
from panosamic.hub.locate import LAST_NAME
from panosamic.train.checkpoint import load_checkpoint
from panosamic.train.options import options_from_values
from panosamic.train.runs import read_run_config
from panosamic.train.trainer import run_training
from panosamic.utils.distributed import DistContext
from panosamic.weights import load_panosamic

ROOT = Path(__file__).resolve().parents[1]
CLI = ["-m", "panosamic.cli"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_stanford(tmp_path_factory.mktemp("synth"))


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}


def _train_args(tmp_path: Path, prepared: Path, run_dir: Path, *extra: str) -> list[str]:
    config = write_config(tmp_path / "config_tiny.json")
    return [
        "train",
        "--dataset", "stanford2d3ds",
        "--dataset-path", str(prepared),
        "--config", str(config),
        "--modalities", "image,depth",
        "--random-sam",
        "--workers", "0",
        "--seed", "0",
        "--run-dir", str(run_dir),
        "--device", "cpu",
        *extra,
    ]  # fmt: skip


def test_two_process_gloo_training(tmp_path: Path, prepared: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
        "--nproc-per-node", "2", *CLI,
        *_train_args(tmp_path, prepared, run_dir, "--epochs", "2", "--batch-size", "2",
                     "--select-on", "last"),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=_env(threads=1), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    run = read_run_config(run_dir)
    assert run["training"]["world_size"] == 2
    plan = run["training"]["lr_plan"]
    assert plan["total_batch"] == 4 and plan["max_lr_eff"] == pytest.approx(5e-3 * 4 / 4)
    assert plan["steps_per_epoch"] == 2  # 10 samples / 2 processes = 5 each, batch 2
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # rank 0 logs alone
    last = load_checkpoint(run_dir / LAST_NAME)
    assert last["global_step"] == 4 and len(last["rng"]) == 2

    # the validation counts were summed over both processes' halves of the split:
    # evaluating the saved model in one process gives the same mIoU
    history = json.loads((run_dir / "history.json").read_text())
    model = load_panosamic(run_dir / LAST_NAME, semantic_only=True)
    eval_set = build_dataset("stanford2d3ds", prepared, split="eval", modalities=("image", "depth"))
    single = evaluate_model(model, eval_set, ctx=DistContext())
    assert single.scores().miou == pytest.approx(history[-1]["miou"], abs=1e-12)

    # `panosamic evaluate` under torchrun: samples split over 2 processes, counts summed,
    # frames gathered in dataset order; rank 0 writes the JSON
    out = tmp_path / "eval.json"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
        "--nproc-per-node", "2", *CLI, "evaluate", str(run_dir / LAST_NAME),
        "--output", str(out), "--workers", "0", "--device", "cpu", "--edge-side-fracs", "0.25",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=_env(threads=1), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["world_size"] == 2
    fold = report["folds"]["1"]
    assert fold["counts"]["intersection"] == single.counts[0].tolist()
    assert fold["counts"]["target"] == single.counts[2].tolist()
    assert [f["sample"] for f in fold["frame_metrics"]] == [name for name, _ in single.frames]


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path, prepared: Path) -> None:
    threads = torch.get_num_threads()  # the same kernels' split as the in-process run
    extra = ("--epochs", "2", "--batch-size", "2", "--checkpoint-every", "1", "--deterministic")
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, *CLI, *_train_args(tmp_path, prepared, killed_dir, *extra)],
        env=_env(threads),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180
    while not (killed_dir / LAST_NAME).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    stopped = load_checkpoint(killed_dir / LAST_NAME)
    assert stopped["global_step"] < 10  # really interrupted (2 epochs x 5 steps)

    resumed = subprocess.run(
        [sys.executable, *CLI, "train", "--run-dir", str(killed_dir), "--resume", "last"],
        env=_env(threads),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    assert not list(killed_dir.glob(".tmp-*"))

    values = {
        "dataset": "stanford2d3ds",
        "dataset_path": str(prepared),
        "config": str(tmp_path / "config_tiny.json"),
        "modalities": "image,depth",
        "random_sam": True,
        "workers": 0,
        "seed": 0,
        "epochs": 2,
        "batch_size": 2,
        "deterministic": True,
        "run_dir": str(tmp_path / "straight"),
    }
    straight = run_training(options_from_values(values))
    a = load_checkpoint(straight / LAST_NAME)["model"]
    b = load_checkpoint(killed_dir / LAST_NAME)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
