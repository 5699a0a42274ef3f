"""Pictures of a segmentation: overlay, instance map, legend, and the panel that shows it all.

Text is sized to the picture (about 2.2 % of its width, at least 11 pixels), so
a legend stays readable on a 8192-pixel-wide panel and fits on a tiny one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..clouds.points import instance_index_map
from ..data.colors import make_palette


def font_for(width: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at a size that suits a picture ``width`` pixels wide."""
    return ImageFont.load_default(size=max(11, round(0.022 * width)))


def overlay(rgb: np.ndarray, colours: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a colour map over an RGB image (both (H, W, 3) uint8)."""
    mixed = (1 - alpha) * rgb.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def instance_map(masks: Sequence[np.ndarray], shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Paint boolean (H, W) masks in list order (later masks on top) with distinct colours."""
    colours = np.concatenate([make_palette(len(masks), seed=seed), np.zeros((1, 3), np.uint8)])
    return colours[instance_index_map(masks, shape)]  # index -1 (no mask): the black last row


def legend(
    class_names: Sequence[str], palette: np.ndarray, fractions: np.ndarray, width: int
) -> np.ndarray:
    """A strip listing the classes present (fraction > 0), with their colour and share of pixels."""
    present = [i for i in np.argsort(-fractions, kind="stable") if fractions[i] > 0]
    font = font_for(width)
    size = int(font.size) if hasattr(font, "size") else 11
    row_h, cell = round(1.6 * size), 12 * size
    cols = max(1, width // cell)
    rows = max(1, -(-len(present) // cols))
    image = Image.new("RGB", (width, rows * row_h + size // 2), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for n, k in enumerate(present):
        x, y = (n % cols) * (width // cols) + size // 2, (n // cols) * row_h + size // 3
        swatch = [x, y, x + size, y + size]
        draw.rectangle(swatch, fill=tuple(int(c) for c in palette[k]), outline=(0, 0, 0))
        label = f"{class_names[k]} {100 * fractions[k]:.1f}%"
        draw.text((x + round(1.4 * size), y), label, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def titled(image: np.ndarray, title: str) -> np.ndarray:
    """The image with a one-line caption above it."""
    font = font_for(image.shape[1])
    size = int(font.size) if hasattr(font, "size") else 11
    bar = Image.new("RGB", (image.shape[1], round(1.5 * size)), (255, 255, 255))
    ImageDraw.Draw(bar).text((size // 3, size // 4), title, fill=(0, 0, 0), font=font)
    return np.concatenate([np.asarray(bar), image], axis=0)


def gray(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 255] -> (H, W, 3) uint8 grey picture."""
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def panel(
    rgb: np.ndarray,
    colours: np.ndarray,
    blended: np.ndarray,
    legend_strip: np.ndarray,
    *,
    depth: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    instances: np.ndarray | None = None,
    instance_count: int = 0,
    caption: str = "",
) -> np.ndarray:
    """The input, the depth and normals the model saw, the classes, the overlay, the
    instance masks and the legend, stacked; ``caption`` names the model and settings."""
    rows = [titled(rgb, "input")]
    if depth is not None:
        rows.append(titled(gray(depth), "depth as the model saw it (pseudo-disparity)"))
    if normals is not None:
        rows.append(titled(normals, "normals as the model saw them"))
    rows += [titled(colours, "semantic classes"), titled(blended, "overlay")]
    if instances is not None:
        rows.append(titled(instances, f"{instance_count} instance masks"))
    rows.append(legend_strip)
    picture = np.concatenate(rows, axis=0)
    return titled(picture, caption) if caption else picture
