"""Equirectangular geometry shared by the renderer, normals from depth and augmentations.

Camera frame (right-handed, metres): **x** forward (the image's centre column, on
the horizon), **y** to the left, **z** up. Pixel (row v, column u) of an H x W
panorama looks along

    longitude  lon = 2 pi (u + 0.5) / W - pi         (0 at the centre column)
    latitude   lat = pi / 2 - pi (v + 0.5) / H      (+pi/2 at the top row)
    direction  (cos lat cos lon, -cos lat sin lon, sin lat)

so moving right in the image turns the view to the right (clockwise seen from
above), as in a photograph. Rolling the image by ``s`` columns to the right
(``np.roll(img, s, axis=1)``) equals turning the camera by ``2 pi s / W`` to the
left, i.e. rotating the scene by ``-2 pi s / W`` about z in the camera frame;
flipping the columns mirrors the scene about the x-z plane (y -> -y).
"""

from __future__ import annotations

import numpy as np


def pixel_angles(height: int, width: int, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Longitude (W,) and latitude (H,) of the pixel centres, in radians."""
    lon = (np.arange(width, dtype=np.float64) + 0.5) * (2.0 * np.pi / width) - np.pi
    lat = np.pi / 2 - (np.arange(height, dtype=np.float64) + 0.5) * (np.pi / height)
    return lon.astype(dtype), lat.astype(dtype)


def pixel_directions(height: int, width: int, dtype=np.float64) -> np.ndarray:
    """Unit ray direction of every pixel in the camera frame: (H, W, 3)."""
    lon, lat = pixel_angles(height, width, np.float64)
    cos_lat = np.cos(lat)[:, None]
    dirs = np.empty((height, width, 3), dtype=np.float64)
    dirs[..., 0] = cos_lat * np.cos(lon)[None, :]
    dirs[..., 1] = -cos_lat * np.sin(lon)[None, :]
    dirs[..., 2] = np.sin(lat)[:, None]
    return dirs.astype(dtype, copy=False)


def direction_to_pixel(
    directions: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous (row, column) coordinates of camera-frame directions (..., 3)."""
    x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
    lon = np.arctan2(-y, x)
    lat = np.arctan2(z, np.hypot(x, y))
    col = (lon + np.pi) * (width / (2.0 * np.pi)) - 0.5
    row = (np.pi / 2 - lat) * (height / np.pi) - 0.5
    return row, col


def yaw_matrix(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about z (counter-clockwise seen from above): (3, 3)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def roll_angle(shift: int, width: int) -> float:
    """Rotation about z (radians) that rolling an image ``shift`` columns right applies to the scene."""
    return -2.0 * np.pi * shift / width
