"""Full-reference fidelity metrics with the super-resolution literature's conventions.

Inputs are numpy uint8 HxWx3 RGB images (the project's frame convention) of equal shape.  PSNR-Y and
SSIM-Y are computed on BT.601 luma with MATLAB ``rgb2ycbcr`` coefficients (Y in [16, 235]), left
unrounded as in BasicSR, after shaving ``shave`` pixels from every border (usually the scale factor),
so figures are comparable to published SR tables.
"""
from __future__ import annotations

import cv2
import numpy as np

# MATLAB rgb2ycbcr luma row for [0, 255] input: 219 * (Kr, Kg, Kb) / 255 with Kr=.299, Kb=.114.
_Y_COEFFS = np.array([65.481, 128.553, 24.966]) / 255.0


def _check_pair(a: np.ndarray, b: np.ndarray, shave: int) -> None:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"{name}: expected uint8 HxWx3 RGB array, got {got}")
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if shave < 0 or 2 * shave >= min(a.shape[:2]):
        raise ValueError(f"shave={shave} leaves no pixels of a {a.shape[1]}x{a.shape[0]} image")


def _shave(x: np.ndarray, s: int) -> np.ndarray:
    return x[s : x.shape[0] - s, s : x.shape[1] - s] if s else x


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma as MATLAB ``rgb2ycbcr``: float64 Y in [16, 235] from RGB in [0, 255] (HxWx3 -> HxW)."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB, got shape {img.shape}")
    return img.astype(np.float64) @ _Y_COEFFS + 16.0


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def psnr_y(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    """PSNR (dB, peak 255) on the Y channel; +inf for identical images."""
    _check_pair(a, b, shave)
    return _psnr(_shave(rgb_to_y(a), shave), _shave(rgb_to_y(b), shave))


def psnr_rgb(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    """PSNR (dB, peak 255) over all three RGB channels; +inf for identical images."""
    _check_pair(a, b, shave)
    return _psnr(_shave(a, shave).astype(np.float64), _shave(b, shave).astype(np.float64))


def _ssim_gray(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K=(0.01, 0.03), L=255, 'valid' region only."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = cv2.getGaussianKernel(11, 1.5)
    win = g @ g.T
    f = lambda z: cv2.filter2D(z, -1, win, borderType=cv2.BORDER_REFLECT)[5:-5, 5:-5]  # crop = 'valid'
    mx, my = f(x), f(y)
    sxx = f(x * x) - mx * mx
    syy = f(y * y) - my * my
    sxy = f(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def ssim_y(a: np.ndarray, b: np.ndarray, shave: int = 0) -> float:
    """SSIM on the Y channel (Gaussian-window SSIM of Wang et al., as in SR papers)."""
    _check_pair(a, b, shave)
    ya, yb = _shave(rgb_to_y(a), shave), _shave(rgb_to_y(b), shave)
    if min(ya.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after shaving, got {ya.shape[1]}x{ya.shape[0]}")
    return _ssim_gray(ya, yb)
