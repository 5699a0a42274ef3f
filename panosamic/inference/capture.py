"""``panosamic segment`` as a library call: inputs -> model choice -> a run over all of them.

Everything that can be checked is checked before the model runs: the inputs
and their partners, the output folder, the weight files (all missing ones are
named at once), the class names. The model is chosen to fit the inputs when
the user does not name one: RGB alone -> the RGB checkpoint, with depth ->
RGB-D, with normals (or ``normals_from_depth``) -> RGB-D-N.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..hub.catalog import DEFAULT_REPO_ID, parse_variant_name, published_family
from ..hub.locate import locate_checkpoint
from .inputs import DepthEncoding
from .run import RunReport, RunSettings, Segmenter, expected_seconds, format_duration
from .sources import PanoramaSource, find_panoramas

VARIANT_FOR = {  # what the inputs carry -> the published checkpoint used by default
    "rgb": "stanford2d3ds-vith-rgb-fold1",
    "rgbd": "stanford2d3ds-vith-rgbd-fold1",
    "rgbdn": "stanford2d3ds-vith-rgbdn-fold1",
}
DEMO_VARIANT = "stanford2d3ds-vitb-rgbdn-fold1"  # the quick first run of the README


@dataclass(frozen=True)
class ModelChoice:
    """Which checkpoint to load and how (the ``--checkpoint`` ... options)."""

    checkpoint: str = DEFAULT_REPO_ID
    variant: str | None = None
    config: str | None = None
    vit_model: str | None = None
    sam_weights_path: str | None = None
    revision: str | None = None
    device: str | None = "cpu"


def default_variant(sources: list[PanoramaSource], normals_from_depth: bool) -> str:
    """The published checkpoint that fits what every source carries."""
    depth = bool(sources) and all(s.depth is not None for s in sources)
    normals = depth and (normals_from_depth or all(s.normals is not None for s in sources))
    return VARIANT_FOR["rgbdn" if normals else "rgbd" if depth else "rgb"]


def checkpoint_facts(choice: ModelChoice) -> dict[str, Any]:
    """Dataset, class names and d_t a checkpoint's folder or metadata records (what is known)."""
    facts: dict[str, Any] = {"dataset": parse_variant_name(choice.variant).dataset}
    try:
        located = locate_checkpoint(
            choice.checkpoint, choice.variant, revision=choice.revision, local_files_only=True
        )
    except (OSError, RuntimeError, ValueError):
        return facts
    facts["dataset"] = facts["dataset"] or parse_variant_name(located.variant).dataset
    run = located.run_config or _safetensors_record(located.path)
    dataset = (run or {}).get("dataset") or {}
    facts["dataset"] = dataset.get("name") or facts["dataset"]
    facts["class_names"] = dataset.get("class_names")
    facts["depth_threshold"] = dataset.get("depth_threshold")
    return facts


def _safetensors_record(path: Path) -> dict[str, Any] | None:
    """The run record an export stores in its safetensors metadata (key ``panosamic``)."""
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        text = (fh.metadata() or {}).get("panosamic")
    return json.loads(text) if text else None


def missing_weights(choice: ModelChoice) -> list[str]:
    """For a published variant: each weight file that is neither cached nor given, with the
    command-line way to provide it (checked before anything is downloaded)."""
    from ..hub.catalog import PUBLISHED_VARIANTS
    from ..hub.huggingface import hub_download, hub_reachable, offline
    from ..hub.sam import SAM_BASE_URL, SAM_FILES, sam_cache_dir

    if choice.checkpoint != DEFAULT_REPO_ID or choice.variant not in PUBLISHED_VARIANTS:
        return []
    if not offline() and hub_reachable():
        return []  # whatever is missing will be downloaded
    missing = []
    try:
        hub_download(
            choice.checkpoint, "model.safetensors", subfolder=choice.variant, local_files_only=True
        )
    except RuntimeError:
        missing.append(
            f"the checkpoint {choice.checkpoint}/{choice.variant}/model.safetensors: on a connected "
            f"machine run `panosamic weights hub {choice.variant} --local-dir ./PanoSAMic`, copy "
            f"./PanoSAMic here and pass --checkpoint ./PanoSAMic --variant {choice.variant}"
        )
    vit = published_family(choice.variant).vit_model
    sam = (
        Path(choice.sam_weights_path)
        if choice.sam_weights_path
        else sam_cache_dir() / SAM_FILES[vit]
    )
    if not (sam.is_file() or (sam.is_dir() and (sam / SAM_FILES[vit]).is_file())):
        missing.append(
            f"the SAM weights {SAM_FILES[vit]}: download {SAM_BASE_URL}{SAM_FILES[vit]} (or run "
            f"`panosamic weights sam {vit} --dir ./sam_weights` on a connected machine) and pass "
            f"--sam-weights-path ./sam_weights"
        )
    return missing


def segment_capture(
    inputs: list[str],
    out_dir: Path,
    choice: ModelChoice,
    settings: RunSettings,
    *,
    recursive: bool = False,
    depth: str | None = None,
    normals: str | None = None,
    depth_scale: float | None = None,
    depth_max: float | None = None,
    depth_invalid: float | None = None,
    dataset: str | None = None,
    class_names: str | None = None,
    demo: bool = False,
    overwrite: bool = False,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
    verbose: bool = False,
    log: Any = print,
) -> RunReport:
    """Segment every panorama ``inputs`` name into ``out_dir`` (see :mod:`.run`).

    ``depth`` and ``normals`` pair files with the panoramas (:mod:`.sources`);
    ``depth_scale``, ``depth_max`` and ``depth_invalid`` (raw units per metre, d_t,
    the raw value without depth) default to the checkpoint's dataset and record.
    """
    from ..data.colors import class_palette
    from ..model import PanoSAMic
    from ..utils.distributed import init_distributed, shutdown_distributed

    if batch_size < 1 or workers < 0:
        raise ValueError("--batch-size must be at least 1 and --workers at least 0")
    if demo:
        sources, problems = _demo_source(out_dir), []
    else:
        if not inputs:
            raise ValueError(
                "name the panoramas to segment (files, folders, patterns or lists), or --demo"
            )
        sources, problems = find_panoramas(
            inputs, recursive=recursive, depth=depth, normals=normals, dataset=dataset
        )
    for problem in problems:
        log(f"skipped {problem.path}: {problem.reason}", file=sys.stderr)
    if not sources:
        raise ValueError(
            "nothing to segment: " + "; ".join(f"{p.path}: {p.reason}" for p in problems)
        )
    from .run import check_output_folder

    check_output_folder(out_dir)
    if choice.variant is None and choice.checkpoint == DEFAULT_REPO_ID:
        variant = DEMO_VARIANT if demo else default_variant(sources, settings.normals_from_depth)
        choice = replace(choice, variant=variant)
    missing = missing_weights(choice)
    if missing:
        raise RuntimeError(
            "weights missing and the Hugging Face Hub is not reachable (or HF_HUB_OFFLINE is set):\n  - "
            + "\n  - ".join(missing)
        )
    facts = checkpoint_facts(choice)
    encoding = depth_encoding(facts, depth_scale, depth_max, depth_invalid, demo)
    settings = replace(settings, depth=encoding)
    ctx = init_distributed(choice.device)
    try:
        model = PanoSAMic.from_pretrained_panosamic(
            choice.checkpoint,
            subfolder=choice.variant,
            config_path=choice.config,
            vit_model=choice.vit_model,
            sam_weights_path=choice.sam_weights_path,
            semantic_only=not settings.instances,
            precision=settings.precision,
            device=ctx.device,
            revision=choice.revision,
        )
        if settings.instances and settings.amg:
            model.set_amg(**settings.amg)
        names = facts.get("class_names") or class_names_for(
            class_names or facts.get("dataset"), choice.variant, model.config.num_classes
        )
        if len(names) != model.config.num_classes:
            raise ValueError(
                f"{len(names)} class names for a model of {model.config.num_classes} classes"
            )
        palette = class_palette(class_names or facts.get("dataset"), model.config.num_classes)
        if ctx.is_main:
            seconds = expected_seconds(
                model.config, ctx.device, settings.precision, settings.instances
            )
            share = -(-len(sources) // ctx.world_size)
            log(
                f"model: {choice.variant or choice.checkpoint} ({_describe(model.config)}); "
                f"about {format_duration(seconds)} per panorama on {ctx.device} (estimate), "
                f"{len(sources)} panoramas"
                + (f" on {ctx.world_size} processes, {share} each" if ctx.distributed else "")
            )
        model_info = {
            "checkpoint": choice.checkpoint,
            "variant": choice.variant,
            "config": choice.config,
            "dataset": facts.get("dataset"),
            "amg": settings.amg if settings.instances else None,
        }
        segmenter = Segmenter(model, out_dir, settings, model_info, names, palette, ctx)
        return segmenter.run(
            sources,
            problems=problems,
            overwrite=overwrite,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            verbose=verbose,
        )
    finally:
        shutdown_distributed(ctx)


def class_names_for(dataset: str | None, variant: str | None, num_classes: int) -> list[str]:
    """The class names of ``dataset`` (default: the one the variant name says), else ``class k``."""
    from ..data.catalog import DATASET_CLASS_NAMES

    dataset = dataset or parse_variant_name(variant).dataset
    names = DATASET_CLASS_NAMES.get(dataset) if dataset else None
    if names is not None and len(names) != num_classes:
        raise ValueError(f"{dataset} has {len(names)} classes but the model predicts {num_classes}")
    return list(names) if names else [f"class {k}" for k in range(num_classes)]


def _describe(config: Any) -> str:
    vit = {"vit_b": "ViT-B", "vit_l": "ViT-L", "vit_h": "ViT-H"}.get(
        config.vit_model, "custom encoder"
    )
    views = "dual view" if config.dual_view_fusion else "single view"
    return f"{vit}, {'+'.join(config.modalities)}, {views}"


def depth_encoding(
    facts: dict[str, Any],
    scale: float | None,
    max_metres: float | None,
    invalid: float | None,
    demo: bool = False,
) -> DepthEncoding:
    """The depth encoding of loose panoramas: what the user gave, else the checkpoint's dataset's
    units and its recorded d_t (else each panorama's own, see :mod:`.inputs`)."""
    from ..data.catalog import DATASET_INFO
    from .inputs import DEMO_DEPTH_MAX

    if demo:  # the demo room is written in millimetres
        return DepthEncoding(1000.0, max_metres or DEMO_DEPTH_MAX, 0.0)
    info = DATASET_INFO.get(facts.get("dataset") or "")
    return DepthEncoding(
        scale if scale is not None else (info.depth_divisor if info else 1.0),
        max_metres if max_metres is not None else facts.get("depth_threshold"),
        invalid if invalid is not None else (float(info.depth_invalid) if info else 0.0),
    )


def _demo_source(out_dir: Path) -> list[PanoramaSource]:
    """The synthetic demo room, written as files so that it runs like any input."""
    from ..data.files import save_png16
    from ..data.normals import encode_normals, normals_from_depth
    from ..data.synth import render_room
    from ..utils.atomic import save_image

    folder = out_dir / ".demo-input"
    image, depth, normals = (
        folder / "demo.png",
        folder / "demo_depth.png",
        folder / "demo_normals.png",
    )
    if not (image.is_file() and depth.is_file() and normals.is_file()):
        from PIL import Image

        room = render_room(seed=0, height=512, width=1024, dataset="stanford2d3ds")
        save_image(Image.fromarray(room.rgb), image)
        save_png16((room.depth * 1000).round().clip(0, 65535).astype("uint16"), depth)
        vectors, good = normals_from_depth(
            room.depth.astype("float64"), room.valid & (room.depth > 0)
        )
        save_image(Image.fromarray(encode_normals(vectors, good)), normals)
    return [PanoramaSource("demo", image, depth, normals)]
