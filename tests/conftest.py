"""Shared test helpers: the golden fixtures laid out the way users have their files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"


def golden_dir(name: str) -> Path:
    return GOLDEN / name


def golden_fixture_config(name: str) -> dict:
    return json.loads((golden_dir(name) / "config.json").read_text())


def golden_model_json(name: str) -> dict:
    """The fixture's architecture as a panosamic JSON config (fusion + custom encoder)."""
    fixture = golden_fixture_config(name)
    config = {
        **fixture["fusion"],
        "encoder": fixture["encoder"],
        "dual_view_fusion": fixture["dual_view_fusion"],
        "modalities": fixture["modalities"],
        "num_classes": fixture["num_classes"],
    }
    if "mask_decoder" in fixture:
        md = fixture["mask_decoder"]
        config["prompt_decoder"] = {
            "mask_in_chans": fixture["prompt_encoder"]["mask_in_chans"],
            "num_multimask_outputs": md["num_multimask_outputs"],
            "transformer_depth": md["transformer_depth"],
            "mlp_dim": md["mlp_dim"],
            "num_heads": md["num_heads"],
            "iou_head_depth": md["iou_head_depth"],
            "iou_head_hidden_dim": md["iou_head_hidden_dim"],
        }
    if "amg" in fixture:
        config["amg"] = fixture["amg"]
    return config


def golden_inputs(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(golden_dir(name) / "input.npz").items()}


def golden_expected(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(golden_dir(name) / "expected.npz"))


def write_hub_layout(root: Path, name: str) -> tuple[Path, Path, Path]:
    """<root>/hub/<name>/model.safetensors, <root>/sam/sam_tiny.pth, <root>/config.json."""
    hub = root / "hub"
    (hub / name).mkdir(parents=True)
    shutil.copy(golden_dir(name) / "model.safetensors", hub / name / "model.safetensors")
    (root / "sam").mkdir()
    sam = root / "sam" / "sam_tiny.pth"
    shutil.copy(golden_dir(name) / "sam_tiny.pth", sam)
    config = root / "config.json"
    config.write_text(json.dumps(golden_model_json(name)))
    return hub, sam, config


def model_flags(root: Path, name: str) -> list[str]:
    """The golden model ``name`` laid out under ``root`` and the CLI flags that load it."""
    hub, sam, config = write_hub_layout(root, name)
    return ["--checkpoint", str(hub), "--variant", name, "--config", str(config),
            "--sam-weights-path", str(sam)]  # fmt: skip


@pytest.fixture
def two_threads():
    """Two intra-op threads (so the CPU worker-thread paths run), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def vitb_files(tmp_path_factory) -> Path:
    """A directory with ``sam_weights/`` and ``dfki-av/PanoSAMic/<variant>/`` (real-size ViT-B, random)."""
    from tests.realsize import write_vitb_files

    root = tmp_path_factory.mktemp("vitb")
    write_vitb_files(root)
    return root


def set_hub_offline(monkeypatch: pytest.MonkeyPatch, offline: bool) -> None:
    """Switch huggingface_hub's offline mode as a user's ``HF_HUB_OFFLINE`` does at start-up
    (huggingface_hub reads the variable when it is imported)."""
    from huggingface_hub import constants

    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    set_hub_offline(monkeypatch, True)
