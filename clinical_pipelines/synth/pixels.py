"""Fast, plausible int16 pixel data: a chest CT or head MR phantom plus shifted noise.

Per series a handful of anatomical key frames and one noise field are computed once;
each slice is then a key frame plus a shifted window of the noise field (one add).
"""

from __future__ import annotations

import numpy as np

#: CT values are stored as HU + 1024 with RescaleIntercept -1024.
CT_OFFSET = 1024
_KEY_FRAMES = 8
_NOISE_MARGIN = 32


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _ct_chest(x: np.ndarray, y: np.ndarray, t: float, jitter: np.ndarray) -> np.ndarray:
    """HU image of an axial chest slice at relative height ``t`` in [-1, 1]."""
    s = 1.0 - 0.08 * t * t
    bx, by = 0.82 * s * jitter[0], 0.58 * s * jitter[1]
    img = np.full(np.broadcast_shapes(x.shape, y.shape), -1000.0, dtype=np.float32)
    img[_ellipse(x, y, 0.0, 0.05, bx, by)] = -100.0  # subcutaneous fat
    img[_ellipse(x, y, 0.0, 0.05, bx - 0.06, by - 0.06)] = 45.0  # muscle / mediastinum
    lung = max(0.0, 1.0 - 0.6 * t * t)
    if lung > 0.05:
        for side in (-1.0, 1.0):
            img[_ellipse(x, y, side * 0.34 * s, 0.0, 0.22 * lung * s, 0.33 * lung * s)] = -850.0
    img[_ellipse(x, y, 0.08, -0.02, 0.16 * s, 0.14 * s)] = 40.0  # heart
    img[_ellipse(x, y, -0.06, 0.16, 0.05, 0.05)] = 160.0  # contrast-filled aorta
    img[_ellipse(x, y, 0.0, 0.45, 0.08, 0.07)] = 700.0  # vertebral body
    img[_ellipse(x, y, 0.0, 0.45, 0.03, 0.03)] = 30.0  # spinal canal
    img[(y > 0.78) & (y < 0.82) & (np.abs(x) < 0.9)] = 250.0  # table
    return img + CT_OFFSET


def _mr_head(x: np.ndarray, y: np.ndarray, t: float, jitter: np.ndarray) -> np.ndarray:
    """T1-like signal of an axial head slice at relative height ``t`` in [-1, 1]."""
    s = np.sqrt(max(0.15, 1.0 - 0.7 * t * t))
    hx, hy = 0.62 * s * jitter[0], 0.78 * s * jitter[1]
    img = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.float32)
    img[_ellipse(x, y, 0.0, 0.0, hx, hy)] = 850.0  # scalp fat
    img[_ellipse(x, y, 0.0, 0.0, hx - 0.04, hy - 0.04)] = 60.0  # skull
    img[_ellipse(x, y, 0.0, 0.0, hx - 0.09, hy - 0.09)] = 520.0  # grey matter
    img[_ellipse(x, y, 0.0, 0.0, hx - 0.2, hy - 0.2)] = 700.0  # white matter
    v = max(0.0, 1.0 - 2.0 * t * t)
    if v > 0.05:
        for side in (-1.0, 1.0):
            img[_ellipse(x, y, side * 0.07, -0.05, 0.04 * v, 0.22 * v)] = 160.0  # ventricles
    return img


class SeriesPixels:
    """Produces the int16 slices of one series; slice ``i`` depends only on the seed and ``i``."""

    def __init__(self, modality: str, rows: int, columns: int, n_slices: int, seed: int) -> None:
        if modality not in ("CT", "MR"):
            raise ValueError(f"unsupported modality {modality!r}")
        rng = np.random.default_rng(seed)
        self.rows, self.columns, self.n_slices = rows, columns, max(1, n_slices)
        self.modality = modality
        y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
        x = np.linspace(-1.0, 1.0, columns, dtype=np.float32)[None, :]
        jitter = rng.uniform(0.9, 1.05, size=2)
        draw = _ct_chest if modality == "CT" else _mr_head
        n_keys = min(_KEY_FRAMES, self.n_slices)
        positions = np.linspace(-0.9, 0.9, n_keys) if n_keys > 1 else np.zeros(1)
        self._keys = [np.rint(draw(x, y, float(t), jitter)).astype(np.int16) for t in positions]
        sigma = 12.0 if modality == "CT" else 18.0
        shape = (rows + _NOISE_MARGIN, columns + _NOISE_MARGIN)
        noise = rng.standard_normal(size=shape, dtype=np.float32) * sigma
        self._noise = np.rint(noise).astype(np.int16)

    def slice(self, index: int) -> np.ndarray:
        """Return slice ``index`` as a C-contiguous little-endian int16 array."""
        key = self._keys[index * len(self._keys) // self.n_slices]
        oy = (index * 7) % _NOISE_MARGIN
        ox = (index * 13) % _NOISE_MARGIN
        img = key + self._noise[oy : oy + self.rows, ox : ox + self.columns]
        if self.modality == "MR":
            np.abs(img, out=img)
        return np.ascontiguousarray(img, dtype="<i2")
