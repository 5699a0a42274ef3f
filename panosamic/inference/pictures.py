"""Pictures of a segmentation: colour map, overlay, instance map, legend, panel, summary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data.colors import colorize, make_palette
from ..utils.atomic import save_image, write_json


def overlay(rgb: np.ndarray, colours: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a colour map over an RGB image (both (H, W, 3) uint8)."""
    mixed = (1 - alpha) * rgb.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def instance_map(masks: Sequence[np.ndarray], shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Paint boolean (H, W) masks in list order (later masks on top) with distinct colours."""
    out = np.zeros((*shape, 3), dtype=np.uint8)
    colours = make_palette(max(len(masks), 1), seed=seed)
    for colour, mask in zip(colours, masks, strict=False):
        out[np.asarray(mask, dtype=bool)] = colour
    return out


def legend(
    class_names: Sequence[str], palette: np.ndarray, fractions: np.ndarray, width: int
) -> np.ndarray:
    """A strip listing the classes present (fraction > 0), with their colour and share of pixels."""
    present = [i for i in np.argsort(-fractions) if fractions[i] > 0]
    font = ImageFont.load_default()
    row_h, cols = 18, max(1, width // 210)
    rows = max(1, -(-len(present) // cols))
    image = Image.new("RGB", (width, rows * row_h + 6), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for n, k in enumerate(present):
        x, y = (n % cols) * (width // cols) + 6, (n // cols) * row_h + 4
        draw.rectangle(
            [x, y, x + 12, y + 12], fill=tuple(int(c) for c in palette[k]), outline=(0, 0, 0)
        )
        draw.text(
            (x + 18, y), f"{class_names[k]} {100 * fractions[k]:.1f}%", fill=(0, 0, 0), font=font
        )
    return np.asarray(image)


def titled(image: np.ndarray, title: str) -> np.ndarray:
    """The image with a one-line caption above it."""
    bar = Image.new("RGB", (image.shape[1], 16), (255, 255, 255))
    ImageDraw.Draw(bar).text((4, 2), title, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.concatenate([np.asarray(bar), image], axis=0)


def stack(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack images of equal width vertically."""
    return np.concatenate(list(images), axis=0)


def save_rgb(array: np.ndarray, path: str | Path) -> None:
    """Write an (H, W, 3) or (H, W) uint8 array as PNG, atomically."""
    save_image(Image.fromarray(np.ascontiguousarray(array)), Path(path))


def write_pictures(
    out_dir: Path,
    name: str,
    rgb: np.ndarray,
    labels: np.ndarray,
    masks: Sequence[np.ndarray],
    class_names: Sequence[str],
    refined: bool = False,
) -> list[Path]:
    """Write the labels, colour map, overlay, panel, instances and summary of one panorama.

    ``rgb``: (H, W, 3) uint8; ``labels``: (H, W) class indices; ``masks``: bool (H, W) each.
    Returns the paths written.
    """
    palette = make_palette(len(class_names))
    colours = colorize(labels, palette)
    fractions = np.bincount(labels.ravel(), minlength=len(class_names)) / labels.size
    blended = overlay(rgb, colours)
    paths = {
        kind: out_dir / f"{name}.{kind}.png" for kind in ("labels", "color", "overlay", "panel")
    }
    save_rgb(labels.astype(np.uint8), paths["labels"])
    save_rgb(colours, paths["color"])
    save_rgb(blended, paths["overlay"])
    rows = [titled(rgb, "input"), titled(colours, "semantic classes"), titled(blended, "overlay")]
    if len(masks):
        paths["instances"] = out_dir / f"{name}.instances.png"
        picture = instance_map(masks, labels.shape)
        save_rgb(picture, paths["instances"])
        rows.append(titled(picture, f"{len(masks)} instance masks"))
    rows.append(legend(class_names, palette, fractions, rgb.shape[1]))
    save_rgb(stack(rows), paths["panel"])
    summary = {
        "classes": {class_names[k]: float(fractions[k]) for k in np.flatnonzero(fractions)},
        "instance_masks": len(masks),
        "refined_with_instances": refined,
        "size": list(labels.shape),
    }
    paths["json"] = out_dir / f"{name}.json"
    write_json(paths["json"], summary, indent=None)
    return list(paths.values())
