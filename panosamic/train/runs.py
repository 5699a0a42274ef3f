"""Run directories: naming, finding the run to resume, ``run_config.json``.

A run lives in ``<experiments>/<dataset>/<YYYYmmdd_HHMMSS>_<ID>`` with
ID = ``<config stem>_F<fold>_V<last letter of the ViT, c = custom encoder>_M<n modalities>``
(the reference's naming), or in a directory given with ``--run-dir``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..hub.locate import RUN_CONFIG_NAME, RUN_FORMAT
from ..modalities import normalize_modalities
from ..model.config import load_config_json
from .options import TrainOptions, options_from_values

RANDOM_SAM_NAME = "sam_random_init.pth"


def experiment_id(config_path: str, fold: int, vit_model: str | None, n_modalities: int) -> str:
    """``<config stem>_F<fold>_V<last letter of vit_model, c = custom encoder>_M<n>``."""
    letter = vit_model[-1] if vit_model else "c"
    return f"{Path(config_path).stem}_F{fold}_V{letter}_M{n_modalities}"


def experiments_root(experiments_path: str | Path, dataset: str) -> Path:
    """``experiments_path/<dataset>``, unless the path already ends in the dataset name."""
    root = Path(experiments_path).expanduser()
    return root if root.name == dataset else root / dataset


def find_latest_run(root: Path, exp_id: str) -> Path | None:
    """The root itself if its name holds the ID, else the newest ``*_<ID>`` directory."""
    if exp_id in root.name and (root / RUN_CONFIG_NAME).is_file():
        return root
    candidates = sorted(p for p in root.glob(f"*_{exp_id}") if p.is_dir())
    return candidates[-1] if candidates else None


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run: {RUN_CONFIG_NAME} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if data.get("format") != RUN_FORMAT:
        raise ValueError(f"{path} has format {data.get('format')!r}, expected {RUN_FORMAT!r}")
    return data


def _resume_run_dir(values: dict[str, Any]) -> Path:
    """The run directory ``--resume`` continues: ``--run-dir``, or the latest run of the ID."""
    if values.get("run_dir"):
        run_dir = Path(values["run_dir"]).expanduser()
        if not (run_dir / RUN_CONFIG_NAME).is_file():
            raise FileNotFoundError(f"--resume: {run_dir} holds no {RUN_CONFIG_NAME}")
        return run_dir
    if not values.get("dataset") or not values.get("config"):
        raise ValueError("--resume needs --run-dir, or --dataset and --config to find the run")
    cfg = load_config_json(values["config"])
    modalities = values.get("modalities") or TrainOptions.__dataclass_fields__["modalities"].default
    vit = None if "encoder" in cfg else (values.get("vit_model") or "vit_h")
    exp_id = experiment_id(
        values["config"], values.get("fold") or 1, vit, len(normalize_modalities(modalities))
    )
    root = experiments_root(values.get("experiments_path") or "experiments", values["dataset"])
    run_dir = find_latest_run(root, exp_id)
    if run_dir is None:
        raise FileNotFoundError(
            f"--resume {values['resume']}: no run '*_{exp_id}' under {root}; "
            "give --run-dir or start without --resume"
        )
    return run_dir


def resolve_options(values: dict[str, Any]) -> TrainOptions:
    """Command-line values (``None`` = not given) -> the run's options (see :mod:`.options`)."""
    if values.get("resume"):
        run_dir = _resume_run_dir(values)
        saved = read_run_config(run_dir)["training"]["options"]
        values = {**values, "run_dir": str(run_dir)}
        return options_from_values(values, saved)
    return options_from_values(values)
