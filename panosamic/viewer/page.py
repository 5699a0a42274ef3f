"""Writing the viewer of a ``panosamic segment`` output folder: ``OUT/viewer/index.html``.

The page and its libraries (``static/``: the page, Photo Sphere Viewer and
three.js bundled into one classic script, their stylesheet and licences) are
copied beside it; ``run.js`` lists the panoramas, and one ``data/NNNN.js`` per
panorama carries its picture (JPEG), its class and instance indices (PNG) and a
thinned copy of its point cloud (PLY), as data URLs that the page loads when the
panorama is first shown. Nothing is fetched over the network and nothing needs
a server: the page opens from ``file://``. ``segment`` writes each panorama's
data script from memory as it goes (:func:`write_panorama_data`); ``write_viewer``
keeps those that are newer than the panorama's files.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..clouds.capture import CLOUD_NAME, output_folders
from ..clouds.ply import read_ply
from ..clouds.points import LabelledCloud, instance_index_map, spread_indices
from ..utils.atomic import atomic_write_text, copy_file

VIEWER_FOLDER = "viewer"
STATIC_FILES = (
    "index.html",
    "viewer.js",
    "photo-sphere-viewer.css",
    "licenses/photo-sphere-viewer-5.15.1.LICENSE",
    "licenses/three-0.185.1.LICENSE",
)


# the page's copy of a cloud: what it draws, no more (classes fit a byte: palette PNGs)
PAGE_VERTEX_TYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
     ("label", "u1")]
)  # fmt: skip


@dataclass(frozen=True)
class ViewerOptions:
    """``max_width``: pictures wider than this are scaled down for the page;
    ``cloud_points``: at most this many points of each cloud go into the page."""

    max_width: int = 2048
    cloud_points: int = 100_000


@dataclass
class ViewerPage:
    """The written page and the panorama folders it leaves out (name, why)."""

    index: Path
    skipped: list[tuple[str, str]]


def write_viewer(
    out_dir: Path, options: ViewerOptions = ViewerOptions(), *, progress: bool = False
) -> ViewerPage:
    """Write (or bring up to date) the viewer of ``out_dir``.

    Each panorama's data script is named by a digest of its name and ``options``,
    and rewritten when older than the panorama's outputs; scripts no panorama
    uses any more are removed.
    """
    out_dir = Path(out_dir)
    target = out_dir / VIEWER_FOLDER
    folders, skipped = [], []
    for folder in output_folders(out_dir):
        name = folder.relative_to(out_dir).as_posix()
        if (folder / "labels.png").is_file():
            folders.append(folder)
        else:
            skipped.append((name, "no labels.png (segment with --save labels)"))
    if not folders:
        raise ValueError(f"no panorama of {out_dir} has a labels.png: nothing to show")
    static = resources.files("panosamic.viewer") / "static"
    for file in STATIC_FILES:
        copy_file(Path(str(static / file)), target / file)
    summaries = [json.loads((f / "summary.json").read_text()) for f in folders]
    class_names, palette = _classes(out_dir, summaries)
    panoramas = []
    pages = tqdm(zip(folders, summaries, strict=True), total=len(folders), desc="viewer",
                 unit="pano", disable=not progress)  # fmt: skip
    for folder, summary in pages:
        name = folder.relative_to(out_dir).as_posix()
        data = data_script_path(out_dir, name, options)
        key = data.stem
        if _stale(data, folder):
            atomic_write_text(data, panorama_script(key, folder, summary, options))
        panoramas.append(
            {
                "name": name,
                "key": key,
                "data": f"data/{key}.js",
                "shares": summary.get("classes", {}),
                "cloud": (folder / CLOUD_NAME).is_file(),
            }
        )
    used = {p["data"].removeprefix("data/") for p in panoramas}
    for old in (target / "data").glob("*.js"):
        if old.name not in used:
            old.unlink()
    run = {
        "title": out_dir.resolve().name,
        "classNames": class_names,
        "palette": palette,
        "panoramas": panoramas,
    }
    atomic_write_text(target / "run.js", f"window.PANOSAMIC_RUN = {json.dumps(run)};\n")
    return ViewerPage(target / "index.html", skipped)


def _classes(out_dir: Path, summaries: list[dict[str, Any]]) -> tuple[list[str], list[list[int]]]:
    """The run's class names and colours (from its run summary, else from the panoramas)."""
    from ..data.colors import class_palette

    run = out_dir / "run_summary.json"
    record = json.loads(run.read_text()) if run.is_file() else {}
    names = record.get("class_names")
    if names is None:
        raise ValueError(
            f"{out_dir} has no run_summary.json with the class names: is it a `panosamic segment` output folder?"
        )
    palette = (
        record.get("palette")
        or class_palette(summaries[0]["model"].get("dataset"), len(names)).tolist()
    )
    return names, [[int(c) for c in colour] for colour in palette]


def _stale(data: Path, folder: Path) -> bool:
    """The data script is older than the panorama's outputs (or missing)."""
    if not data.is_file():
        return True
    newest = max(p.stat().st_mtime_ns for p in folder.iterdir())
    return data.stat().st_mtime_ns < newest


def data_script_path(out_dir: Path, name: str, options: ViewerOptions = ViewerOptions()) -> Path:
    """Where the viewer of ``out_dir`` keeps the data script of panorama ``name``: named by a
    digest of the panorama and the options."""
    key = hashlib.sha256(json.dumps([name, asdict(options)]).encode()).hexdigest()[:16]
    return Path(out_dir) / VIEWER_FOLDER / "data" / f"{key}.js"


def write_panorama_data(
    out_dir: Path,
    folder: Path,
    rgb: np.ndarray,
    labels: np.ndarray,
    masks: list[np.ndarray],
    cloud: LabelledCloud | None,
) -> Path:
    """Write the data script of panorama ``folder`` of run ``out_dir`` from what is in memory
    (as :func:`write_viewer` would from the folder's files, which then keeps it)."""
    options = ViewerOptions()
    path = data_script_path(out_dir, Path(folder).relative_to(out_dir).as_posix(), options)
    atomic_write_text(path, data_script(path.stem, rgb, labels, masks, cloud, options))
    return path


def panorama_script(key: str, folder: Path, summary: dict[str, Any], options: ViewerOptions) -> str:
    """The data script of one panorama folder (see :func:`data_script`)."""
    from ..data.files import read_rgb

    masks = []
    if (folder / "masks.json").is_file():
        from pycocotools import mask as mask_utils

        records = json.loads((folder / "masks.json").read_text())
        masks = [mask_utils.decode(r["segmentation"]).astype(bool) for r in records]
    cloud = folder / CLOUD_NAME
    return data_script(
        key,
        read_rgb(summary["input"]["image"]),
        np.asarray(Image.open(folder / "labels.png")),
        masks,
        read_ply(cloud, at_most=options.cloud_points) if cloud.is_file() else None,
        options,
    )


def data_script(
    key: str,
    rgb: np.ndarray,
    labels: np.ndarray,
    masks: list[np.ndarray],
    cloud: LabelledCloud | None,
    options: ViewerOptions,
) -> str:
    """``window.PANOSAMIC_PANORAMA(key, {...})`` with the picture, the classes, the instances
    (index + 1 in red + 256 green) and at most ``options.cloud_points`` points of the cloud.

    Args:
        rgb: (H, W, 3) uint8; labels: (H, W) class indices (fit a byte: palette PNGs).
        masks: (H, W) bool instance masks, largest first; cloud: the panorama's, or None.
    """
    picture = Image.fromarray(rgb)
    width = min(options.max_width, picture.width)
    size = (width, width // 2)
    # classes and instances are indices: the nearest pixel's, picked before anything is encoded
    rows, cols = (
        (2 * np.arange(n) + 1) * full // (2 * n)
        for n, full in zip(size[::-1], labels.shape, strict=True)
    )
    small = np.ix_(rows, cols)
    labels = np.asarray(labels)[small].astype(np.uint8)
    instances = (
        instance_index_map([np.asarray(m, bool)[small] for m in masks], labels.shape) + 1
    )  # 0: none
    encoded_instances = np.zeros((*labels.shape, 3), dtype=np.uint8)
    encoded_instances[..., 0], encoded_instances[..., 1] = instances % 256, instances // 256
    data = {
        "image": _data_url(
            picture.resize(size, Image.LANCZOS) if picture.size != size else picture, "JPEG"
        ),
        "labels": _data_url(Image.fromarray(labels), "PNG"),
        "instances": _data_url(Image.fromarray(encoded_instances), "PNG"),
        "cloud": None if cloud is None else _cloud(cloud, options.cloud_points),
    }
    return f"window.PANOSAMIC_PANORAMA({json.dumps(key)}, {json.dumps(data)});\n"


def _data_url(image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode()


def _cloud(cloud: LabelledCloud, limit: int) -> str:
    """At most ``limit`` evenly spread points of the cloud as a base64 PLY with what the page
    draws: position, colour and class (16 bytes a point)."""
    from plyfile import PlyData, PlyElement

    pick = spread_indices(len(cloud), limit)
    vertices = np.empty(len(pick), dtype=PAGE_VERTEX_TYPE)
    for axis, name in enumerate("xyz"):
        vertices[name] = cloud.xyz[pick, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = cloud.rgb[pick, channel]
    label = cloud.label[pick]
    vertices["label"] = np.where(label >= 0, np.minimum(label, 254), 255)  # 255: none
    buffer = io.BytesIO()
    PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(buffer)
    return base64.b64encode(buffer.getvalue()).decode()
