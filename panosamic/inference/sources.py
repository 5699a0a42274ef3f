"""Which panoramas a run segments: files, folders, glob patterns, lists, prepared datasets.

Every panorama becomes a :class:`PanoramaSource`: its RGB file, the depth and
normals files paired with it, and the name its outputs go under (its path
relative to the input it was found in, so that two ``pano.png`` in different
folders do not meet). Depth and normals of a loose panorama are found by a
pairing template such as ``{dir}/../depth/{stem:rgb=depth}.png``:

- ``{dir}``: the panorama's folder; ``{parent}``: that folder's name;
- ``{stem}``: the file name without extension, ``{name}``: with it, ``{ext}``: the extension;
- ``{field:old=new}``: the field with ``old`` replaced by ``new`` (e.g. ``{stem:_rgb=_depth}``).

A template without ``{`` is one file for a single panorama. What cannot be
used (a missing partner, a file that is no image, a panorama listed twice) is
reported as an :class:`InputProblem` with its path; the others go on.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.catalog import DATASET_INFO, TOF360_SCENES
from ..data.prepare import SAMPLES_CACHE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
LIST_SUFFIXES = (".txt", ".lst")
_FIELD = re.compile(r"\{(\w+)(?::([^{}=]*)=([^{}]*))?\}")


@dataclass(frozen=True)
class PanoramaSource:
    """One panorama to segment.

    ``name``: where its outputs go, relative to the output folder (POSIX, no extension);
    ``dataset`` and ``sample``: set for a sample of a prepared dataset (its files are read
    with the dataset's conventions, depth and normals included).
    """

    name: str
    image: Path
    depth: Path | None = None
    normals: Path | None = None
    dataset: str | None = None
    dataset_root: Path | None = None
    sample: str | None = None  # "<area or scene>/<sample>"

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.image, self.depth, self.normals) if p is not None]


@dataclass(frozen=True)
class InputProblem:
    """An input that cannot be segmented, and why."""

    path: str
    reason: str


def fill_template(template: str, image: Path) -> Path:
    """The partner file of ``image`` named by a pairing ``template`` (see the module docstring)."""
    fields = {
        "dir": str(image.parent),
        "parent": image.parent.name,
        "stem": image.stem,
        "name": image.name,
        "ext": image.suffix,
    }

    def replace(match: re.Match[str]) -> str:
        key, old, new = match.group(1), match.group(2), match.group(3)
        if key not in fields:
            raise ValueError(
                f"pairing template {template!r}: unknown field {{{key}}}; known: {sorted(fields)}"
            )
        value = fields[key]
        if old is not None:
            if old not in value:
                raise LookupError(f"{old!r} does not occur in the {key} {value!r}")
            value = value.replace(old, new)
        return value

    return Path(_FIELD.sub(replace, template))


def is_template(value: str | None) -> bool:
    return value is not None and "{" in value


def prepared_dataset_name(root: Path, given: str | None = None) -> str:
    """The dataset a prepared folder holds: ``given``, else read off its folder names."""
    if given is not None:
        return given
    locations = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any(n.startswith("area_") for n in locations):
        return "stanford2d3ds"
    if any(n.startswith("scene_") for n in locations):
        return "structured3d"
    if locations and set(locations) <= set(TOF360_SCENES):
        return "tof360"
    if locations:
        return "matterport3d"
    raise ValueError(f"{root} is a prepared dataset without samples")


def find_panoramas(
    inputs: list[str],
    *,
    recursive: bool = False,
    depth: str | None = None,
    normals: str | None = None,
    dataset: str | None = None,
) -> tuple[list[PanoramaSource], list[InputProblem]]:
    """Every panorama the ``inputs`` name, with its partners; and the inputs that fail.

    ``depth`` and ``normals`` are pairing templates (or, for a single panorama,
    file paths); ``dataset`` names the dataset of prepared folders (default:
    read off their layout).
    """
    found: list[tuple[Path, str]] = []  # (image, output name)
    sources: list[PanoramaSource] = []
    problems: list[InputProblem] = []
    for entry in inputs:
        _expand(entry, recursive, dataset, found, sources, problems)
    partners = _partner_paths(found, depth, normals)
    loose = []
    for image, name in found:
        if image.resolve() in partners:  # a depth or normals file of another panorama
            continue
        loose.append((image, name))
    if (depth or normals) and not (is_template(depth) or is_template(normals)) and len(loose) > 1:
        raise ValueError(
            "--depth / --normals name one file, but there are several panoramas: give a "
            "pairing template such as '{dir}/../depth/{stem}.png'"
        )
    for image, name in loose:
        pair, problem = _pair(image, depth, normals)
        if problem is not None:
            problems.append(problem)
            continue
        sources.append(PanoramaSource(name, image, *pair))
    return _unique(sources, problems)


def _expand(
    entry: str,
    recursive: bool,
    dataset: str | None,
    found: list[tuple[Path, str]],
    sources: list[PanoramaSource],
    problems: list[InputProblem],
) -> None:
    path = Path(entry).expanduser()
    if glob.has_magic(entry):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        images = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            problems.append(InputProblem(entry, "the pattern matches no image"))
        found.extend((p, _relative_name(p, _glob_root(entry))) for p in images)
    elif path.is_dir() and (path / SAMPLES_CACHE).is_file():
        sources.extend(_prepared_samples(path, dataset))
    elif path.is_dir():
        pattern = "**/*" if recursive else "*"
        images = sorted(
            p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not images:
            what = "under" if recursive else "in (add --recursive for its sub-folders)"
            problems.append(InputProblem(entry, f"no image {what} this folder"))
        found.extend((p, _relative_name(p, path)) for p in images)
    elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                listed = Path(line).expanduser()
                listed = listed if listed.is_absolute() else path.parent / listed
                _expand(str(listed), recursive, dataset, found, sources, problems)
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        found.append((path, path.stem))
    elif path.exists():
        problems.append(
            InputProblem(entry, f"not an image ({', '.join(IMAGE_SUFFIXES)}), list or folder")
        )
    else:
        problems.append(InputProblem(entry, "does not exist"))


def _relative_name(image: Path, root: Path) -> str:
    try:
        relative = image.relative_to(root)
    except ValueError:
        relative = Path(image.name)
    return relative.with_suffix("").as_posix()


def _prepared_samples(root: Path, dataset: str | None) -> list[PanoramaSource]:
    name = prepared_dataset_name(root, dataset)
    if name not in DATASET_INFO:
        raise ValueError(f"unknown dataset {name!r}; choose from {list(DATASET_INFO)}")
    samples = json.loads((root / SAMPLES_CACHE).read_text())
    out = []
    for location in sorted(samples):
        for sample in samples[location]:
            folder = root / location / sample
            normals = folder / "normals.webp"
            out.append(
                PanoramaSource(
                    name=f"{location}/{sample}",
                    image=folder / "rgb.webp",
                    depth=folder / "depth.png",
                    normals=normals if normals.is_file() else None,
                    dataset=name,
                    dataset_root=root,
                    sample=f"{location}/{sample}",
                )
            )
    return out


def _partner_paths(
    found: list[tuple[Path, str]], depth: str | None, normals: str | None
) -> set[Path]:
    """The resolved paths that some found panorama names as its depth or normals."""
    partners = set()
    for image, _ in found:
        for template in (depth, normals):
            if is_template(template):
                with contextlib.suppress(LookupError):
                    partners.add(fill_template(template, image).resolve())
    return partners


def _pair(
    image: Path, depth: str | None, normals: str | None
) -> tuple[tuple[Path | None, Path | None], InputProblem | None]:
    pair: list[Path | None] = []
    for role, template in (("depth", depth), ("normals", normals)):
        if template is None:
            pair.append(None)
            continue
        try:
            partner = fill_template(template, image) if is_template(template) else Path(template)
        except LookupError as err:
            return (None, None), InputProblem(str(image), f"no {role} file: {err}")
        if not partner.is_file():
            return (None, None), InputProblem(str(image), f"its {role} file {partner} is missing")
        pair.append(partner)
    return (pair[0], pair[1]), None


def _unique(
    sources: list[PanoramaSource], problems: list[InputProblem]
) -> tuple[list[PanoramaSource], list[InputProblem]]:
    """Drop a panorama given twice (reported); give distinct outputs to equal names."""
    seen_files: set[Path] = set()
    names: dict[str, int] = {"viewer": 1}  # OUT/viewer/ is the viewer's
    kept = []
    for source in sources:
        key = source.image.resolve()
        if key in seen_files:
            problems.append(InputProblem(str(source.image), "listed twice (segmented once)"))
            continue
        seen_files.add(key)
        count = names.get(source.name, 0)
        names[source.name] = count + 1
        if count:  # the same relative name from two inputs
            source = replace(source, name=f"{source.name}~{count + 1}")
        kept.append(source)
    return kept, problems


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    parts = Path(pattern).expanduser().parts
    fixed = [p for p in itertools.takewhile(lambda part: not glob.has_magic(part), parts)]
    return Path(*fixed) if fixed else Path(".")
