"""Blur kernels of the Real-ESRGAN degradation, built in torch on a fixed odd grid.

Every kernel of size k is returned zero-padded to `grid` x `grid` (centred), so kernels of different sizes
stack into one tensor and one grouped convolution blurs a whole batch with a different kernel per image.
Zero padding does not change the filter: with reflect padding of grid//2 the extra taps multiply zeros.

Formulas (d = pixel offset from the centre, Sigma = R diag(sx^2, sy^2) R^T):
  Gaussian            exp(-0.5 d^T Sigma^-1 d)
  generalized Gaussian exp(-0.5 (d^T Sigma^-1 d)^beta)     (beta = 1 is the Gaussian)
  plateau             1 / (1 + (d^T Sigma^-1 d)^beta)
  sinc (circular low-pass, cutoff w) w J1(w r) / (2 pi r), centre value w^2 / (4 pi)
All are normalised to sum 1.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def _grid(size: int, dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """Pixel offsets (x along columns, y along rows) from the centre of an odd size x size grid."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel grid size must be a positive odd number, got {size}")
    r = torch.arange(size, dtype=dtype) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return xx, yy


def _size_mask(ksize: Tensor, grid: int, dtype) -> Tensor:
    """[N, grid, grid] mask, 1 inside the centred ksize x ksize square of each kernel."""
    xx, yy = _grid(grid, dtype)
    half = (ksize.to(dtype) // 2).view(-1, 1, 1)
    return ((xx.abs() <= half) & (yy.abs() <= half)).to(dtype)


def _normalise(k: Tensor) -> Tensor:
    """Sum 1, with taps below 1e-8 set to exact zero: they change nothing visible in 8-bit output, but
    float32 denormals in Gaussian tails slow CPU convolutions ~6x, and zeros let the blur skip them."""
    k = k / k.sum(dim=(-2, -1), keepdim=True)
    k = torch.where(k.abs() < 1e-8, torch.zeros_like(k), k)
    return k / k.sum(dim=(-2, -1), keepdim=True)


def quad_form(sigma_x: Tensor, sigma_y: Tensor, theta: Tensor, grid: int) -> Tensor:
    """d^T Sigma^-1 d on the grid for each of N (sigma_x, sigma_y, rotation) triples: [N, grid, grid]."""
    dtype = torch.float64
    sx, sy, th = (torch.as_tensor(v, dtype=dtype).reshape(-1) for v in (sigma_x, sigma_y, theta))
    xx, yy = _grid(grid, dtype)
    c, s = torch.cos(th).view(-1, 1, 1), torch.sin(th).view(-1, 1, 1)
    # rotate the offsets into the kernel's principal axes: u = R^T d
    u = c * xx + s * yy
    v = -s * xx + c * yy
    return (u / sx.view(-1, 1, 1)) ** 2 + (v / sy.view(-1, 1, 1)) ** 2


def gaussian_kernels(ksize, sigma_x, sigma_y, theta, grid: int = 21, beta=None, plateau: bool = False) -> Tensor:
    """Batched (generalized / plateau) Gaussian kernels, float32 [N, grid, grid], each summing to 1.

    beta None: plain Gaussian. plateau False: exp(-0.5 q^beta); True: 1/(1 + q^beta).
    """
    q = quad_form(sigma_x, sigma_y, theta, grid)
    n = q.shape[0]
    ks = torch.as_tensor(ksize).reshape(-1).expand(n)
    if beta is None:
        if plateau:
            raise ValueError("the plateau kernel needs a beta")
        k = torch.exp(-0.5 * q)
    else:
        b = torch.as_tensor(beta, dtype=torch.float64).reshape(-1).expand(n).view(-1, 1, 1)
        k = 1.0 / (1.0 + q**b) if plateau else torch.exp(-0.5 * q**b)
    return _normalise(k * _size_mask(ks, grid, k.dtype)).float()


def sinc_kernels(cutoff, ksize, grid: int = 21, normalize: bool = True) -> Tensor:
    """Circular low-pass (2-D sinc) kernels w J1(w r)/(2 pi r), float32 [N, grid, grid].

    Models ringing/overshoot artefacts. normalize=False keeps the closed-form values (centre w^2/(4 pi)).
    """
    w = torch.as_tensor(cutoff, dtype=torch.float64).reshape(-1)
    n = w.shape[0]
    ks = torch.as_tensor(ksize).reshape(-1).expand(n)
    xx, yy = _grid(grid)
    r = torch.sqrt(xx**2 + yy**2).expand(n, grid, grid)
    wv = w.view(-1, 1, 1)
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    k = wv * torch.special.bessel_j1(wv * safe_r) / (2 * math.pi * safe_r)
    k = torch.where(r > 0, k, (wv**2 / (4 * math.pi)).expand_as(k))
    k = k * _size_mask(ks, grid, k.dtype)
    return (_normalise(k) if normalize else k).float()


def identity_kernels(n: int, grid: int = 21) -> Tensor:
    """Dirac kernels (no blur), [n, grid, grid]."""
    k = torch.zeros(n, grid, grid)
    k[:, grid // 2, grid // 2] = 1.0
    return k


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def _shape_beta(gen: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    """beta below or above 1 with equal chance (Real-ESRGAN's choice), uniform within each side."""
    below = torch.rand(n, generator=gen, dtype=torch.float64) < 0.5
    return torch.where(below, _uniform(gen, n, lo, min(1.0, hi)), _uniform(gen, n, max(1.0, lo), hi))


def random_mixed_kernels(
    gen: torch.Generator,
    n: int,
    ksizes: Tensor,
    probs: tuple[float, ...],
    sigma: tuple[float, float],
    betag: tuple[float, float],
    betap: tuple[float, float],
    grid: int = 21,
) -> Tensor:
    """One random kernel per image from the six Gaussian families (weights `probs`, order KERNEL_TYPES).

    All parameters for all families are drawn for every image (a fixed number of draws per call, so the
    random stream does not depend on which family was picked), then each image takes its family's kernel.
    """
    if len(probs) != len(KERNEL_TYPES):
        raise ValueError(f"kernel_prob needs {len(KERNEL_TYPES)} weights ({', '.join(KERNEL_TYPES)})")
    kind = torch.multinomial(torch.tensor(probs, dtype=torch.float64), n, replacement=True, generator=gen)
    sx = _uniform(gen, n, *sigma)
    sy = _uniform(gen, n, *sigma)
    th = _uniform(gen, n, -math.pi, math.pi)
    bg = _shape_beta(gen, n, *betag)
    bp = _shape_beta(gen, n, *betap)
    iso = (kind % 2 == 0).to(torch.float64)  # even indices of KERNEL_TYPES are isotropic
    sy = iso * sx + (1 - iso) * sy
    th = (1 - iso) * th
    fam = kind // 2  # 0 Gaussian, 1 generalized, 2 plateau
    out = torch.empty(n, grid, grid)
    for f in range(3):
        sel = fam == f
        if not sel.any():
            continue
        if f == 0:
            out[sel] = gaussian_kernels(ksizes[sel], sx[sel], sy[sel], th[sel], grid)
        elif f == 1:
            out[sel] = gaussian_kernels(ksizes[sel], sx[sel], sy[sel], th[sel], grid, beta=bg[sel])
        else:
            out[sel] = gaussian_kernels(ksizes[sel], sx[sel], sy[sel], th[sel], grid, beta=bp[sel], plateau=True)
    return out


def random_kernel_sizes(gen: torch.Generator, n: int, lo: int, hi: int) -> Tensor:
    """Odd kernel sizes uniform in lo..hi (both odd)."""
    choices = torch.arange(lo, hi + 1, 2)
    return choices[torch.randint(len(choices), (n,), generator=gen)]


def random_blur_kernels(
    gen: torch.Generator,
    n: int,
    ksize_range: tuple[int, int],
    probs: tuple[float, ...],
    sigma: tuple[float, float],
    betag: tuple[float, float],
    betap: tuple[float, float],
    sinc_prob: float,
    grid: int = 21,
) -> Tensor:
    """Real-ESRGAN first/second blur: a sinc kernel with prob sinc_prob (cutoff pi/3..pi, pi/5..pi for
    kernels of 13 px or more), else a random Gaussian-family kernel. [n, grid, grid]."""
    ks = random_kernel_sizes(gen, n, *ksize_range)
    use_sinc = torch.rand(n, generator=gen) < sinc_prob
    lo = torch.where(ks < 13, math.pi / 3, math.pi / 5).to(torch.float64)
    cutoff = lo + (math.pi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    gauss = random_mixed_kernels(gen, n, ks, probs, sigma, betag, betap, grid)
    sinc = sinc_kernels(cutoff, ks, grid)
    return torch.where(use_sinc.view(-1, 1, 1), sinc, gauss)


def random_final_sinc(
    gen: torch.Generator, n: int, ksize_range: tuple[int, int], prob: float, grid: int = 21
) -> Tensor:
    """Real-ESRGAN final filter: a sinc (cutoff pi/3..pi) with prob `prob`, else identity. [n, grid, grid]."""
    ks = random_kernel_sizes(gen, n, *ksize_range)
    use = torch.rand(n, generator=gen) < prob
    cutoff = math.pi / 3 + (2 * math.pi / 3) * torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.where(use.view(-1, 1, 1), sinc_kernels(cutoff, ks, grid), identity_kernels(n, grid))
