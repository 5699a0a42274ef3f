"""Segmenting a whole capture: one model, many panoramas, resumable, on one process or many.

The model is loaded once; panoramas are read in ``DataLoader`` workers while it
runs (:mod:`.reader`), ``batch_size`` at a time go through the network, and
their outputs are encoded and written by a writer thread (:mod:`.outputs`).
Every panorama's folder carries a ``summary.json`` with its inputs'
fingerprints, the model and the settings: a re-run skips the panoramas whose
record matches and redoes the others. Under ``torchrun`` every process takes
its share of the panoramas (one device each); process 0 writes the run summary
(``run_summary.json`` and ``.csv``) once all are done.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils.atomic import atomic_write_text, remove_stale_temporaries, write_json
from ..utils.distributed import DistContext, all_gather_objects, barrier
from .inputs import DepthEncoding, PanoramaInputs
from .outputs import SUMMARY_NAME, PanoramaResult, write_outputs
from .reader import PanoramaReader, PreparedDepth, ReadResult, read_in_workers
from .sources import InputProblem, PanoramaSource

SUMMARY_FORMAT = "panosamic.segment/1"
RUN_SUMMARY = "run_summary"
LOCK_NAME = ".panosamic-segment.lock"
NO_DEPTH_NOTE = "no depth: no point cloud"
WRITER_NICENESS = 19  # added to the writer thread's nice value (Linux clamps at 19: lowest)


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides a run's results (and, when it changes, which panoramas are redone)."""

    save: tuple[str, ...]
    instances: bool = True
    refine: bool = True
    amg: dict[str, Any] = field(default_factory=dict)
    depth: DepthEncoding = field(default_factory=DepthEncoding)
    normals_from_depth: bool = False
    precision: str = "fp32"
    cloud_stride: int = 1
    cloud_voxel: float | None = None

    def key(self, model: dict[str, Any]) -> str:
        """A digest of the model and the settings that shape a panorama's folder: equal keys give
        equal outputs (the viewer is the run's, and the cloud settings count only with clouds)."""
        settings = asdict(self)
        settings["save"] = [kind for kind in self.save if kind != "viewer"]
        if "pointcloud" not in self.save:
            del settings["cloud_stride"], settings["cloud_voxel"]
        text = json.dumps({"model": model, "settings": settings}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RunReport:
    """What a run did: one record per panorama (its summary, or why it failed)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def segmented(self) -> int:
        return sum(r["status"] == "segmented" for r in self.records)

    @property
    def skipped(self) -> int:
        return sum(r["status"] == "skipped" for r in self.records)


def fingerprint(source: PanoramaSource) -> dict[str, list[int]]:
    """Size and modification time of each input file: a changed file is redone."""
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in source.files}


def finished_record(folder: Path, source: PanoramaSource, key: str) -> dict[str, Any] | None:
    """The panorama's summary when its outputs are complete and of these inputs and settings."""
    path = folder / SUMMARY_NAME
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    complete = all((folder / name).is_file() for name in summary.get("files", []))
    same = summary.get("settings_key") == key and summary.get("input", {}).get(
        "fingerprint"
    ) == fingerprint(source)
    return summary if complete and same else None


def check_output_folder(out_dir: Path) -> None:
    """Fail before any work when ``out_dir`` cannot take the outputs."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the output folder {out_dir} is a file; choose a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".panosamic-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write into the output folder {out_dir}: {err}") from err


def prepared_depths(sources: Sequence[PanoramaSource]) -> dict[Path, PreparedDepth]:
    """Depth units and d_t (the training split's, fold 1) of every prepared dataset among the sources."""
    from ..data.catalog import dataset_info
    from ..data.datasets import PanoramaDataset

    depths = {}
    for source in sources:
        root = source.dataset_root
        if root is None or root in depths:
            continue
        assert source.dataset is not None
        dataset = PanoramaDataset(source.dataset, root, split="all", modalities=("image", "depth"))
        depths[root] = PreparedDepth(
            dataset_info(source.dataset).depth_divisor, dataset.depth_threshold
        )
    return depths


class Segmenter:
    """Runs a loaded model over many panoramas and writes their outputs.

    Args:
        model: a PanoSAMic in eval mode, on its device.
        out_dir: where every panorama's folder goes.
        settings: what decides the results.
        model_info: checkpoint, variant and config as recorded in each summary.
        class_names, palette: the model's classes and their colours.
        ctx: this process's place in a torchrun world.
    """

    def __init__(
        self,
        model: Any,
        out_dir: Path,
        settings: RunSettings,
        model_info: dict[str, Any],
        class_names: Sequence[str],
        palette: np.ndarray,
        ctx: DistContext,
    ) -> None:
        self.model = model
        self.out_dir = out_dir
        self.settings = settings
        self.model_info = model_info
        self.class_names = list(class_names)
        self.palette = palette
        self.ctx = ctx
        self.key = settings.key(model_info)
        self.caption = (
            f"{model_info.get('variant') or model_info.get('checkpoint')}, {settings.precision}"
            + (", refined with instance masks" if settings.instances and settings.refine else "")
        )

    # ---------------------------------------------------------------- the run
    def run(
        self,
        sources: Sequence[PanoramaSource],
        *,
        problems: Sequence[InputProblem] = (),
        overwrite: bool = False,
        batch_size: int = 1,
        workers: int = 0,
        progress: bool = True,
        verbose: bool = False,
    ) -> RunReport:
        """Segment this process's share of ``sources``; on process 0, write the run summary."""
        from filelock import FileLock, Timeout
        from tqdm.auto import tqdm

        start = time.perf_counter()
        lock = FileLock(str(self.out_dir / LOCK_NAME))
        if self.ctx.is_main:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise RuntimeError(
                    f"another `panosamic segment` run is writing into {self.out_dir} "
                    f"(lock {self.out_dir / LOCK_NAME}); wait for it or choose another folder"
                ) from None
            _remove_stale(self.out_dir)
        barrier(self.ctx)
        try:
            mine = list(sources)[self.ctx.rank :: self.ctx.world_size]
            report = RunReport()
            todo = []
            for source in mine:
                done = None if overwrite else finished_record(self.folder(source), source, self.key)
                if done is not None:
                    report.records.append({**done, "status": "skipped"})
                else:
                    todo.append(source)
            reader = PanoramaReader(
                todo,
                self.model.config.modalities,
                self.settings.depth,
                prepared_depths(todo),
                self.settings.normals_from_depth,
            )
            bar = tqdm(
                total=len(todo),
                desc="segment",
                unit="pano",
                disable=not (progress and self.ctx.is_main),
                dynamic_ncols=True,
            )
            with _Writer() as writer, bar:
                for batch in read_in_workers(reader, batch_size, workers):
                    self._segment_batch(batch, todo, report, writer, verbose)
                    bar.update(len(batch))
                for record in writer.results():
                    report.records.append(record)
            report.failures += [
                {
                    "path": str(todo[f["index"]].image),
                    "name": todo[f["index"]].name,
                    "reason": f["reason"],
                }
                for f in writer.failed
            ]
            report.seconds = time.perf_counter() - start
            return self._finish(report, problems, progress)
        finally:
            if self.ctx.is_main:
                lock.release()

    def folder(self, source: PanoramaSource) -> Path:
        return self.out_dir / source.name

    def _segment_batch(
        self,
        batch: list[ReadResult],
        todo: list[PanoramaSource],
        report: RunReport,
        writer: _Writer,
        verbose: bool,
    ) -> None:
        ready = [item for item in batch if item.panorama is not None]
        for item in batch:
            if item.error is not None:
                source = todo[item.index]
                report.failures.append(
                    {"path": str(source.image), "name": source.name, "reason": item.error}
                )
        if not ready:
            return
        try:
            results, seconds = self._forward([item.panorama for item in ready], verbose)
        except ValueError:  # find the panorama the model refuses; the others go on
            if len(ready) == 1:
                raise
            for item in ready:
                self._segment_batch([item], todo, report, writer, verbose)
            return
        for item, result in zip(ready, results, strict=True):
            source = todo[item.index]
            summary = self._summary(source, item.panorama, seconds / len(ready))
            writer.submit(
                item.index,
                write_outputs,
                self.folder(source),
                item.panorama,
                result,
                kinds=self.settings.save,
                class_names=self.class_names,
                palette=self.palette,
                summary=summary,
                caption=self.caption,
                cloud_stride=self.settings.cloud_stride,
                cloud_voxel=self.settings.cloud_voxel,
                viewer_of=self.out_dir if "viewer" in self.settings.save else None,
            )

    def _forward(
        self, panoramas: list[PanoramaInputs], verbose: bool
    ) -> tuple[list[PanoramaResult], float]:
        settings = self.settings
        device = self.model.device
        batch = [{m: t.to(device) for m, t in p.modalities.items()} for p in panoramas]
        refine = settings.instances and settings.refine
        start = time.perf_counter()
        with torch.inference_mode():
            outputs = self.model(
                batch, semantic_only=not settings.instances, refine=refine, progress=verbose
            )
        results = []
        for out in outputs:
            logits = out["refined_sem_preds"] if refine else out["sem_preds"]
            probs = confidence = softmax = None
            if "probs" in settings.save:
                softmax = torch.softmax(out["sem_preds"].float(), dim=0)
                probs = softmax.half().cpu().numpy()
            if "pointcloud" in settings.save:
                top = (
                    softmax.amax(0)
                    if softmax is not None
                    else top_probability(out["sem_preds"].float())
                )
                confidence = top.cpu().numpy()
            masks = [
                {**m, "segmentation": m["segmentation"].cpu().numpy()}
                for m in out["instance_masks"]
            ]
            labels = logits.argmax(0).cpu().numpy().astype(np.int64)
            results.append(PanoramaResult(labels, masks, probs, refine, confidence))
        return results, time.perf_counter() - start

    def _summary(
        self, source: PanoramaSource, panorama: PanoramaInputs, seconds: float
    ) -> dict[str, Any]:
        wants_cloud = "pointcloud" in self.settings.save
        cloud_note = [NO_DEPTH_NOTE] if wants_cloud and panorama.metres is None else []
        return {
            "format": SUMMARY_FORMAT,
            "name": source.name,
            "input": {
                "image": str(Path(source.image).resolve()),
                "depth": None if source.depth is None else str(Path(source.depth).resolve()),
                "normals": None if source.normals is None else str(Path(source.normals).resolve()),
                "sample": source.sample,
                "dataset": source.dataset,
                "fingerprint": fingerprint(source),
            },
            "model": self.model_info,
            "settings": json.loads(json.dumps(asdict(self.settings), default=str)),
            "settings_key": self.key,
            "depth_max": panorama.depth_max,
            "notes": [*panorama.notes, *cloud_note],
            "seconds": round(seconds, 3),
            "device": str(self.model.device),
            "written": datetime.now().isoformat(timespec="seconds"),
        }

    # ------------------------------------------------------------- the summary
    def _finish(
        self, report: RunReport, problems: Sequence[InputProblem], progress: bool
    ) -> RunReport:
        parts = all_gather_objects(report, self.ctx)
        if not self.ctx.is_main:
            return report
        merged = RunReport(seconds=max(p.seconds for p in parts))
        for part in parts:
            merged.records += part.records
            merged.failures += part.failures
        merged.failures = [
            {"path": p.path, "name": "", "reason": p.reason} for p in problems
        ] + merged.failures
        merged.records.sort(key=lambda r: r["name"])
        self._write_run_summary(merged)
        if "viewer" in self.settings.save and merged.records:
            from ..viewer import write_viewer

            write_viewer(self.out_dir, progress=progress)
        return merged

    def _write_run_summary(self, report: RunReport) -> None:
        from .. import __version__

        hours = report.seconds / 3600
        data = {
            "format": SUMMARY_FORMAT.replace("segment", "segment-run"),
            "finished": datetime.now().isoformat(timespec="seconds"),
            "model": self.model_info,
            "settings": json.loads(json.dumps(asdict(self.settings), default=str)),
            "class_names": self.class_names,
            "palette": np.asarray(self.palette).tolist(),
            "world_size": self.ctx.world_size,
            "versions": {
                "panosamic": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "totals": {
                "segmented": report.segmented,
                "skipped": report.skipped,
                "failed": len(report.failures),
                "seconds": round(report.seconds, 2),
                "panoramas_per_hour": round(report.segmented / hours, 1) if hours > 0 else None,
            },
            "panoramas": [
                {
                    k: r.get(k)
                    for k in (
                        "name",
                        "status",
                        "classes",
                        "instance_masks",
                        "notes",
                        "seconds",
                        "device",
                        "files",
                    )
                }
                for r in report.records
            ],
            "failures": report.failures,
        }
        write_json(self.out_dir / f"{RUN_SUMMARY}.json", data)
        atomic_write_text(self.out_dir / f"{RUN_SUMMARY}.csv", _csv(report, self.class_names))


def _csv(report: RunReport, class_names: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["name", "status", "seconds", "device", "instance_masks", *class_names, "reason"]
    )
    for r in report.records:
        shares = [f"{r.get('classes', {}).get(c, 0.0):.6f}" for c in class_names]
        writer.writerow(
            [
                r["name"],
                r["status"],
                r.get("seconds"),
                r.get("device"),
                r.get("instance_masks"),
                *shares,
                "",
            ]
        )
    for f in report.failures:
        writer.writerow(
            [f["name"] or f["path"], "failed", "", "", "", *[""] * len(class_names), f["reason"]]
        )
    return buffer.getvalue()


def _remove_stale(out_dir: Path) -> None:
    """Remove what an interrupted run left half-written (``.tmp-*`` folders and files)."""
    for folder in [
        out_dir,
        *(p for p in out_dir.rglob("*") if p.is_dir() and not p.name.startswith(".tmp-")),
    ]:
        remove_stale_temporaries(folder)


def top_probability(logits: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """(K, H, W) logits -> (H, W) largest softmax probability, ``rows`` image rows at a time
    (the same values as the whole softmax, about twice as fast on a CPU: it stays in cache)."""
    out = logits.new_empty(logits.shape[1:])
    for top in range(0, logits.shape[1], rows):
        out[top : top + rows] = torch.softmax(logits[:, top : top + rows], dim=0).amax(0)
    return out


def _yield_to_the_model() -> None:
    """Lower the calling thread's scheduling priority where the OS allows it per thread (Linux).

    On a CPU the model's threads take every core; a writer at equal priority would share a
    core with one of them while the others wait for it, costing the forward about twice the
    writer's own time. At low priority it runs in the model's gaps and when it falls behind.
    """
    if platform.system() != "Linux":
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + WRITER_NICENESS)
    except OSError as err:  # a message, not a warning: -W error must not stop the writer
        print(f"panosamic: the output writer keeps its priority ({err})", file=sys.stderr)


class _Writer:
    """Writes outputs in a background thread, at most a few panoramas behind the model."""

    def __init__(self, pending: int = 4) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="panosamic-writer", initializer=_yield_to_the_model
        )
        self._slots = threading.Semaphore(pending)
        self._futures: list[tuple[int, Future]] = []
        self.failed: list[dict[str, Any]] = []

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._pool.shutdown(wait=True)  # whatever was submitted is written completely

    def submit(self, index: int, fn: Any, *args: Any, **kwargs: Any) -> None:
        self._slots.acquire()
        summary = kwargs["summary"]

        def job() -> dict[str, Any]:
            try:
                files = fn(*args, **kwargs)
                return {**summary, "status": "segmented", "files": files}
            finally:
                self._slots.release()

        self._futures.append((index, self._pool.submit(job)))

    def results(self) -> list[dict[str, Any]]:
        records = []
        for index, future in self._futures:
            try:
                records.append(future.result())
            except Exception as err:  # one panorama's failure, not the run's
                self.failed.append({"index": index, "reason": f"writing failed: {err}"})
        return records


def expected_seconds(config: Any, device: torch.device, precision: str, instances: bool) -> float:
    """A rough time per panorama on ``device``: the encoder's (and instance path's) arithmetic
    at this device's measured matrix-product speed."""
    from ..benchmark import encoder_flops, instance_path_flops

    rate = matmul_rate(device, precision)
    flops = encoder_flops(config) * 1.3
    if instances:
        flops += instance_path_flops(config)
    return flops / rate


def matmul_rate(device: torch.device, precision: str) -> float:
    """FLOP/s of a 1024-cubed matrix product on ``device`` in the run's precision."""
    dtype = (
        torch.bfloat16
        if precision == "bf16"
        else torch.float16
        if precision == "fp16"
        else torch.float32
    )
    if device.type == "cpu" and dtype == torch.float16:
        dtype = torch.float32
    a = torch.randn(1024, 1024, device=device, dtype=dtype)
    for _ in range(2):
        a @ a
    _sync(device)
    start, runs = time.perf_counter(), 4
    for _ in range(runs):
        a @ a
    _sync(device)
    return runs * 2 * 1024**3 / max(time.perf_counter() - start, 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
