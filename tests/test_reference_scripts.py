"""The reference's scripts as its model card and README run them: `python
panosamic/evaluation/{evaluate,train}.py` with the reference's flags, mapped onto our commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import write_tiny_sam_file

from panosamic.cli import build_parser, main, reference_scripts
from panosamic.cli.reference_scripts import (
    ReferenceParser,
    torchrun_command,
    translate,
)
from panosamic.data import make_prepared_dataset

ROOT = Path(__file__).resolve().parents[1]
CARD = (
    "--dataset_path data/s2d3ds --config_path config/config_stanford2d3ds_dv.json "
    "--checkpoint dfki-av/PanoSAMic --subfolder stanford2d3ds-vith-rgbdn-fold1 "
    "--sam_weights_path ./sam_weights --dataset stanford2d3ds --fold 1 --vit_model vit_h "
    "--modalities image,depth,normals --num_gpus 1"
)
README_TRAIN = (
    "--dataset_path data/s2d3ds --config_path config/config_stanford2d3ds_dv.json "
    "--experiments_path ./experiments --sam_weights_path ./sam_weights --dataset stanford2d3ds "
    "--fold 1 --batch_size 1 --epochs 50 --vit_model vit_h --modalities image,depth,normals "
    "--num_gpus 1 --workers_per_gpu 2"
)


def _ours(script: str, command: str) -> list[str]:
    argv = translate(script, ReferenceParser(script).parse_reference(shlex.split(command)))
    build_parser().parse_args(argv)  # what we run is a valid panosamic command line
    return argv


def test_the_model_cards_command_is_panosamic_evaluate():
    assert _ours("evaluate", CARD) == [
        "evaluate", "--checkpoint", "dfki-av/PanoSAMic", "--variant",
        "stanford2d3ds-vith-rgbdn-fold1", "--config", "config/config_stanford2d3ds_dv.json",
        "--vit-model", "vit_h", "--modalities", "image,depth,normals", "--dataset",
        "stanford2d3ds", "--dataset-path", "data/s2d3ds", "--fold", "1", "--batch-size", "1",
        "--workers", "2", "--sam-weights-path", "./sam_weights",
    ]  # fmt: skip
    # left out, the ViT size and modalities are read off the checkpoint, not the reference's defaults
    short = CARD.replace("--vit_model vit_h ", "").replace("--modalities image,depth,normals ", "")
    assert "--vit-model" not in _ours("evaluate", short)
    assert "--modalities" not in _ours("evaluate", short)


def test_the_readmes_train_command_is_panosamic_train():
    argv = _ours("train", README_TRAIN)
    assert argv == [
        "train", "--dataset", "stanford2d3ds", "--dataset-path", "data/s2d3ds", "--config",
        "config/config_stanford2d3ds_dv.json", "--experiments-path", "./experiments",
        "--sam-weights-path", "./sam_weights", "--fold", "1", "--batch-size", "1", "--epochs",
        "50", "--vit-model", "vit_h", "--modalities", "image,depth,normals", "--workers", "2",
    ]  # fmt: skip
    assert _ours("train", README_TRAIN + " --resume last")[-2:] == ["--resume", "last"]
    assert "--resume" not in _ours("train", README_TRAIN + " --resume None")
    # the reference's defaults when left out: one epoch, ViT-H, all three modalities
    bare = "--dataset_path d --config_path c.json --experiments_path e --dataset stanford2d3ds"
    argv = _ours("train", bare)
    for flag, value in (("--epochs", "1"), ("--vit-model", "vit_h"), ("--workers", "2")):
        assert argv[argv.index(flag) + 1] == value
    assert argv[argv.index("--modalities") + 1] == "image,depth,normals"


def test_compute_efficiency_is_panosamic_info():
    assert _ours("evaluate", CARD + " --compute_efficiency True") == [
        "info",
        "stanford2d3ds-vith-rgbdn-fold1",
    ]
    argv = _ours("train", README_TRAIN + " --compute_efficiency yes")
    assert argv[0] == "info" and argv[argv.index("--config") + 1].endswith("_dv.json")
    assert _ours("train", README_TRAIN + " --compute_efficiency False")[0] == "train"


def test_unknown_and_missing_flags_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exit:
        ReferenceParser("evaluate").parse_reference([*shlex.split(CARD), "--epochz", "3"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --epochz 3" in err
    assert "supports --dataset_path, --config_path, --experiments_path, --checkpoint" in err
    with pytest.raises(SystemExit):  # train has no --checkpoint
        ReferenceParser("train").parse_reference([*shlex.split(README_TRAIN), "--checkpoint", "x"])
    assert "--checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ReferenceParser("evaluate").parse_reference(
            ["--dataset_path", "d", "--config_path", "c", "--dataset", "stanford2d3ds"]
        )
    assert "--checkpoint" in capsys.readouterr().err and "--experiments_path" in "".join(
        ReferenceParser("evaluate").supported_flags
    )
    with pytest.raises(SystemExit):
        ReferenceParser("train").parse_reference(
            shlex.split(README_TRAIN.replace("1 --workers", "0 --workers"))
        )
    assert "--num_gpus must be at least 1" in capsys.readouterr().err


def test_several_gpus_start_processes_as_torchrun():
    command = torchrun_command(["evaluate", "run"], 4)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[command.index("--nproc-per-node") + 1] == "4" and "--standalone" in command
    assert command[-4:] == ["-m", "panosamic.cli", "evaluate", "run"]


def test_num_gpus_decides_the_processes(monkeypatch, capsys):
    import torch

    runs = []
    monkeypatch.setattr(reference_scripts, "run", lambda argv, n: runs.append((argv[0], n)) or 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    four = shlex.split(CARD.replace("--num_gpus 1", "--num_gpus 4"))
    assert reference_scripts.main("evaluate", four) == 0
    assert "-> torchrun --nproc-per-node 4 panosamic evaluate" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "4")  # started by torchrun or srun: this process only
    assert reference_scripts.main("evaluate", four) == 0
    assert runs == [("evaluate", 4), ("evaluate", 1)]
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(SystemExit) as exit:
        reference_scripts.main("evaluate", four)
    assert exit.value.code == 2 and "this node has 2" in capsys.readouterr().err
    assert reference_scripts.main("evaluate", [*four, "--compute_efficiency", "1"]) == 0
    assert runs[-1] == ("info", 1)


def test_every_reference_command_in_the_docs_parses():
    found = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                if "panosamic/evaluation/" not in line:
                    continue
                words = shlex.split(line.split(" #")[0])
                for script in ("evaluate", "train"):
                    if f"panosamic/evaluation/{script}.py" in words:
                        start = words.index(f"panosamic/evaluation/{script}.py") + 1
                        args = ReferenceParser(script).parse_reference(words[start:])
                        if script == "train" or args.checkpoint:  # (a run must exist first)
                            build_parser().parse_args(translate(script, args))
                        found += 1
    assert found >= 5


# ----------------------------------------------------------------------------- end to end


def _script(workspace: Path, script: str, command: str) -> subprocess.CompletedProcess:
    """``python panosamic/evaluation/<script>.py COMMAND`` run by path from ``workspace``."""
    return subprocess.run(
        [sys.executable, f"panosamic/evaluation/{script}.py", *shlex.split(command)],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _miou(output: str) -> str:
    (row,) = [line for line in output.splitlines() if line.split()[:1] == ["1"]]
    return row.split()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder laid out like a user's clone: ``panosamic/`` (this package), ``./sam_weights/``,
    a prepared dataset; ``dfki-av/PanoSAMic/<variant>/`` is exported into it later."""
    root = tmp_path_factory.mktemp("clone")
    (root / "panosamic").symlink_to(ROOT / "panosamic", target_is_directory=True)
    (root / "sam_weights").mkdir()
    write_tiny_sam_file(root / "sam_weights" / "sam_tiny.pth")
    make_prepared_dataset("stanford2d3ds", root / "data", count=4, height=32, width=64)
    return root


TINY = (
    "--dataset_path data/prepared --config_path config/config_tiny_debug.json "
    "--sam_weights_path ./sam_weights/sam_tiny.pth --dataset stanford2d3ds --fold 1 "
    "--modalities image,depth"
)


@pytest.mark.slow
def test_train_resume_and_evaluate_as_the_readme_writes_them(workspace):
    train = f"{TINY} --experiments_path ./experiments --batch_size 1 --epochs 1 --vit_model vit_h --num_gpus 1 --workers_per_gpu 0"
    done = _script(workspace, "train", train)
    assert done.returncode == 0, done.stderr
    assert "-> panosamic train --dataset stanford2d3ds" in done.stderr
    (run,) = (workspace / "experiments" / "stanford2d3ds").iterdir()
    assert run.name.endswith("_config_tiny_debug_F1_Vc_M2") and (run / "model_best.pth").is_file()

    resumed = _script(workspace, "train", train + " --resume last")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run}" in resumed.stdout + resumed.stderr
    assert list((workspace / "experiments" / "stanford2d3ds").iterdir()) == [run]

    # the README's --experiments_path form: the newest run of the experiment ID
    evaluate = f"{TINY} --experiments_path ./experiments --vit_model vit_h --num_gpus 1 --workers_per_gpu 2"
    local = _script(workspace, "evaluate", evaluate)
    assert local.returncode == 0, local.stderr
    assert f"-> panosamic evaluate {run.relative_to(workspace)} --dataset" in local.stderr

    # the model card's form on the run exported into the Hub layout
    hub = workspace / "dfki-av" / "PanoSAMic" / "tiny-rgbd-fold1" / "model.safetensors"
    assert main(["export", str(run), str(hub), "--sam-weights-path", str(workspace / "sam_weights" / "sam_tiny.pth")]) == 0  # fmt: skip
    card = f"{TINY} --checkpoint dfki-av/PanoSAMic --subfolder tiny-rgbd-fold1 --num_gpus 1"
    published = _script(workspace, "evaluate", card)
    assert published.returncode == 0, published.stderr
    assert _miou(published.stdout) == _miou(local.stdout)

    # two processes on this node: the same counts, summed over the processes
    two = _script(workspace, "evaluate", evaluate.replace("--num_gpus 1", "--num_gpus 2"))
    assert two.returncode == 0, two.stderr
    assert "torchrun --nproc-per-node 2 panosamic evaluate" in two.stderr
    assert _miou(two.stdout) == _miou(local.stdout)


@pytest.mark.slow
def test_errors_run_by_path(workspace):
    unknown = _script(workspace, "evaluate", f"{TINY} --checkpoint x --refine")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --refine" in unknown.stderr
    assert "--workers_per_gpu" in unknown.stderr
    missing = _script(workspace, "evaluate", f"{TINY} --experiments_path ./nothing")
    assert missing.returncode == 2
    assert "no training run '*_config_tiny_debug_F1_Vc_M2'" in missing.stderr
