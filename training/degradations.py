"""HR -> LR degradations for training: Real-ESRGAN's second-order model, or plain bicubic.

Everything random comes from one explicit `torch.Generator` (CPU), so a batch is reproducible from a seed;
the global torch / numpy / random state is never touched. JPEG uses OpenCV (`cv2.imencode`, integer
quality drawn from the generator), which is deterministic.

Real-ESRGAN pipeline (Wang et al. 2021), per batch of HR images in [0,1] and an SR factor `scale`:
  stage 1: blur (random kernel per image) -> random resize (up/down/keep, one factor and mode per batch,
           relative to the HR size) -> Gaussian or Poisson noise (per image, optionally gray) -> JPEG
  stage 2: blur with prob second_blur_prob -> resize to (H/scale) * s2 -> noise -> then, in random order
           (prob 0.5 each): [resize to LR size + final sinc] -> JPEG, or JPEG -> [resize + final sinc]
  finally clamp to [0,1] and quantise to 8 bit.
Deviations from the reference code: the Gaussian-vs-Poisson choice is drawn per image (Real-ESRGAN draws
it per batch); JPEG is real libjpeg (4:2:0) rather than the differentiable DiffJPEG; the HR target is not
USM-sharpened; the LR size is round(H/scale), so any scale factor works. The stage-1 ranges are relative
to the HR image as in Real-ESRGAN, so small scale factors still see strong degradations.

"video" mode (footage as users have it): optional camera/lens blur (isotropic or anisotropic Gaussian; the
BD benchmark's sigma 1.6 lies inside the range) -> one down-scale to the LR size by a scaler drawn from
resize_modes (area, bicubic with anti-aliasing like ffmpeg's scalers, bilinear point sampling at pixel
centres like BD decimation) -> optional sensor noise -> optional real codec round trip (training.codec: H.264
at a CRF, MPEG-4/MPEG-2 at a quantiser, 4:2:0 chroma, intra or inter-coded). One degradation, not two
stages: video is rarely re-encoded through a JPEG-like second pass, and the heavy Real-ESRGAN stage-1 resize
would make small factors see x6 degradations.

"bicubic" mode: F.interpolate(mode="bicubic", antialias=True) to round(H/scale). With antialiasing the
cubic kernel (a = -0.5) is widened by the scale factor, which is what MATLAB's imresize does; on Set5 it
reproduces the benchmark's MATLAB-made x4 LR images to about 55 dB PSNR (edge handling differs).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import kernels as K

MODES = ("realesrgan", "bicubic", "video")
RESIZE_MODES = ("area", "bilinear", "bicubic", "bicubic_aa")
_DEFAULT_KPROB = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # order of kernels.KERNEL_TYPES


@dataclass
class DegradationConfig:
    """All ranges and probabilities of the degradation; defaults are Real-ESRGAN's x4 training values.

    Ranges are (lo, hi) pairs; noise sigmas are in 8-bit units (divided by 255 when applied). The
    *_prob switches that Real-ESRGAN does not have (blur_prob, noise_prob, jpeg_prob ...) default to 1 and
    exist so single stages can be isolated (tests, ablations).
    """

    mode: str = "realesrgan"
    resize_modes: tuple[str, ...] = RESIZE_MODES
    # stage 1
    blur_prob: float = 1.0
    kernel_range: tuple[int, int] = (7, 21)
    kernel_prob: tuple[float, ...] = _DEFAULT_KPROB
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    noise_prob: float = 1.0
    gaussian_noise_prob: float = 0.5  # else Poisson
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # stage 2
    second_blur_prob: float = 0.8
    kernel_range2: tuple[int, int] = (7, 21)
    kernel_prob2: tuple[float, ...] = _DEFAULT_KPROB
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    noise_prob2: float = 1.0
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_prob2: float = 1.0
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    # final
    final_sinc_prob: float = 0.8
    final_kernel_range: tuple[int, int] = (7, 21)
    # video mode: codec round trip (weights over training.codec.CODECS = h264, mpeg4, mpeg2)
    codec_prob: float = 0.7
    codec_weights: tuple[float, float, float] = (0.6, 0.2, 0.2)
    crf_range: tuple[float, float] = (18.0, 38.0)
    qscale_range: tuple[float, float] = (2.0, 14.0)
    codec_motion_prob: float = 0.5
    codec_shift_max: int = 3
    # video mode: when set, blur_sigma is stated at this SR factor and scaled by scale / blur_ref_scale, so
    # the blur is the same in LR pixels at every factor (a sigma of 2 HR px is 0.5 LR px at x4 but 1.6 LR px at
    # x1.25, which would teach low factors to sharpen far more than real footage needs)
    blur_ref_scale: float | None = None

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                setattr(self, f.name, tuple(v))
        if self.mode not in MODES:
            raise ValueError(f"unknown degradation mode {self.mode!r} (one of {', '.join(MODES)})")
        bad = [m for m in self.resize_modes if m not in RESIZE_MODES]
        if bad or not self.resize_modes:
            raise ValueError(f"resize_modes must be a non-empty subset of {RESIZE_MODES}, got {self.resize_modes}")
        for f in fields(self):
            v = getattr(self, f.name)
            name = f.name
            if name.endswith("_prob") or name.endswith("_prob2"):
                if isinstance(v, tuple):
                    if any(p < 0 for p in v) or sum(v) <= 0:
                        raise ValueError(f"{name} must be non-negative weights with a positive sum, got {v}")
                elif not 0.0 <= v <= 1.0:
                    raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
            elif name.endswith("_range") or name.endswith("_range2") or name.startswith("blur_sigma"):
                if len(v) != 2 or not (0 < v[0] <= v[1]):
                    raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi, got {v}")
        for name in ("kernel_prob", "kernel_prob2"):
            if len(getattr(self, name)) != len(K.KERNEL_TYPES):
                raise ValueError(f"{name} needs {len(K.KERNEL_TYPES)} weights for {', '.join(K.KERNEL_TYPES)}")
        if self.blur_ref_scale is not None and not self.blur_ref_scale > 0:
            raise ValueError(f"blur_ref_scale must be a positive factor, got {self.blur_ref_scale}")
        if len(self.codec_weights) != 3:
            raise ValueError("codec_weights needs 3 weights (h264, mpeg4, mpeg2)")
        for name in ("resize_prob", "resize_prob2"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"{name} needs 3 weights (up, down, keep)")
        for name in ("kernel_range", "kernel_range2", "final_kernel_range"):
            lo, hi = getattr(self, name)
            if int(lo) != lo or int(hi) != hi or lo % 2 == 0 or hi % 2 == 0:
                raise ValueError(f"{name} must be odd integer sizes, got {(lo, hi)}")
        for name in ("jpeg_range", "jpeg_range2"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi <= 100:
                raise ValueError(f"{name} must lie within 1..100, got {(lo, hi)}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "DegradationConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown degradation config keys: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain dict with lists instead of tuples (YAML/JSON friendly)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# -- random helpers (all on the given generator) ----------------------------------------------------


def _rand(gen: torch.Generator, n: int = 1) -> Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64)


def _uniform(gen: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * _rand(gen, n)


def _choice(gen: torch.Generator, weights) -> int:
    w = torch.tensor(weights, dtype=torch.float64)
    return int(torch.multinomial(w, 1, generator=gen))


def sample_scale(generator: torch.Generator, lo: float, hi: float) -> float:
    """SR factor uniform in [lo, hi], so one model learns every factor in the range (LR = HR / scale)."""
    if not (0 < lo <= hi) or not math.isfinite(hi):
        raise ValueError(f"scale range must satisfy 0 < lo <= hi, got ({lo}, {hi})")
    return float(lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64))


# -- building blocks ------------------------------------------------------------------------------


def filter2d(x: Tensor, kernels: Tensor) -> Tensor:
    """Blur each image of x [N,C,H,W] with its own kernel [N,k,k] (odd k), reflect padding.

    One grouped convolution for the whole batch (faster on CPU than grouping images by kernel size),
    after trimming the kernel borders that are zero for every image. Kernels are applied as correlation,
    which equals convolution for the point-symmetric kernels built here. Images smaller than the padding
    fall back to replicate padding (reflect needs pad < size).
    """
    n, c, h, w = x.shape
    kernels = kernels.to(device=x.device, dtype=x.dtype)
    k = kernels.shape[-1]
    d = (torch.arange(k, device=kernels.device) - k // 2).abs()
    ring = torch.maximum(d.view(-1, 1), d.view(1, -1))  # Chebyshev distance from the centre
    r = int(torch.where(kernels != 0, ring, torch.zeros_like(ring)).amax())
    if r == 0:
        return x * kernels[:, k // 2, k // 2].view(n, 1, 1, 1)
    kernels = kernels[:, k // 2 - r : k // 2 + r + 1, k // 2 - r : k // 2 + r + 1]
    mode = "reflect" if r < min(h, w) else "replicate"
    xp = F.pad(x, (r, r, r, r), mode=mode)
    weight = kernels.repeat_interleave(c, dim=0).unsqueeze(1)
    out = F.conv2d(xp.reshape(1, n * c, h + 2 * r, w + 2 * r), weight, groups=n * c)
    return out.reshape(n, c, h, w)


def resize(x: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """F.interpolate to `size` (area / bilinear / bicubic, align_corners False, no antialias)."""
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    if mode == "bicubic_aa":
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def add_gaussian_noise(x: Tensor, sigma: Tensor, gray: Tensor, gen: torch.Generator) -> Tensor:
    """x + N(0, sigma^2) per image (sigma in [0,1] units, shape [N]); gray images get one noise map for
    all channels. Clamped to [0,1]."""
    n, c, h, w = x.shape
    gray = gray.cpu()
    noise = torch.empty((n, c, h, w))
    if (~gray).any():
        noise[~gray] = torch.randn((int((~gray).sum()), c, h, w), generator=gen)
    if gray.any():
        noise[gray] = torch.randn((int(gray.sum()), 1, h, w), generator=gen).expand(-1, c, -1, -1)
    noise = noise * sigma.to(torch.float32).view(n, 1, 1, 1)
    return (x + noise.to(x.device, x.dtype)).clamp(0, 1)


def _poisson(img: Tensor, gen: torch.Generator) -> Tensor:
    """Shot noise (CPU) with the photon count set by the number of distinct 8-bit levels of each image
    (Real-ESRGAN's rule: vals = 2**ceil(log2(levels)); noise = Poisson(img * vals) / vals - img)."""
    n = img.shape[0]
    q = (img * 255).round().clamp(0, 255)
    codes = q.to(torch.int64).reshape(n, -1) + 256 * torch.arange(n).view(n, 1)
    levels = (torch.bincount(codes.reshape(-1), minlength=256 * n).view(n, 256) > 0).sum(1)
    vals = torch.exp2(torch.ceil(torch.log2(levels.to(torch.float64)))).to(img.dtype).view(n, 1, 1, 1)
    q = q / 255
    return torch.poisson(q * vals, generator=gen) / vals - q


def add_poisson_noise(x: Tensor, scale: Tensor, gray: Tensor, gen: torch.Generator) -> Tensor:
    """x + scale * Poisson noise per image; gray images use the noise of their luma (BT.601) for all
    channels. Each image gets only the kind it needs (Real-ESRGAN computes both and blends)."""
    n = x.shape[0]
    xc = x.detach().float().cpu()
    noise = torch.empty_like(xc)
    col = ~gray.cpu()
    if col.any():
        noise[col] = _poisson(xc[col], gen)
    if gray.any():
        g = gray.cpu()
        luma = 0.299 * xc[g, 0:1] + 0.587 * xc[g, 1:2] + 0.114 * xc[g, 2:3]
        noise[g] = _poisson(luma, gen).expand(-1, 3, -1, -1)
    noise = noise * scale.to(torch.float32).view(n, 1, 1, 1)
    return (x + noise.to(x.device, x.dtype)).clamp(0, 1)


def random_noise(
    x: Tensor, gen: torch.Generator, gauss_prob: float, sigma_range, poisson_range, gray_prob: float
) -> Tensor:
    """Per image: Gaussian noise (sigma uniform in sigma_range / 255) with prob gauss_prob, else Poisson
    (scale uniform in poisson_range); gray noise with prob gray_prob."""
    n = x.shape[0]
    use_gauss = _rand(gen, n) < gauss_prob
    sigma = _uniform(gen, *sigma_range, n) / 255.0
    pscale = _uniform(gen, *poisson_range, n)
    gray = _rand(gen, n) < gray_prob
    out = x.clone()
    if use_gauss.any():
        s = use_gauss.to(x.device)
        out[s] = add_gaussian_noise(x[s], sigma[use_gauss], gray[use_gauss], gen)
    if (~use_gauss).any():
        s = (~use_gauss).to(x.device)
        out[s] = add_poisson_noise(x[s], pscale[~use_gauss], gray[~use_gauss], gen)
    return out


def jpeg(x: Tensor, quality) -> Tensor:
    """Real JPEG round trip per image with OpenCV (integer quality 1..100, one per image)."""
    q = torch.as_tensor(quality).reshape(-1).expand(x.shape[0])
    arr = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(arr)
    for i in range(arr.shape[0]):
        qi = int(round(float(q[i])))
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(arr[i][..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, qi])
        if not ok:
            raise RuntimeError("OpenCV failed to encode a JPEG")
        out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255.0


def random_jpeg(x: Tensor, gen: torch.Generator, prob: float, qrange) -> Tensor:
    n = x.shape[0]
    apply = _rand(gen, n) < prob
    q = _uniform(gen, *qrange, n).round()
    if not apply.any():
        return x.clamp(0, 1)
    out = x.clamp(0, 1).clone()
    s = apply.to(x.device)
    out[s] = jpeg(out[s], q[apply])
    return out


def _random_resize_factor(gen: torch.Generator, probs, rng) -> float:
    kind = _choice(gen, probs)  # 0 up, 1 down, 2 keep
    up = float(_uniform(gen, 1.0, rng[1]))
    down = float(_uniform(gen, rng[0], 1.0))
    return (up, down, 1.0)[kind]


def _random_mode(gen: torch.Generator, modes) -> str:
    return modes[_choice(gen, [1.0] * len(modes))]


def _quantise(x: Tensor) -> Tensor:
    return ((x.clamp(0, 1) * 255).round() / 255).clamp(0, 1)


def lr_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """LR size for an HR size and SR factor: round(H/scale), round(W/scale), at least 1."""
    return max(1, round(h / scale)), max(1, round(w / scale))


# -- public entry point ---------------------------------------------------------------------------


def degrade(hr: Tensor, scale: float, cfg: DegradationConfig, generator: torch.Generator) -> Tensor:
    """LR batch [N,3,round(H/scale),round(W/scale)] in [0,1], 8-bit quantised, from HR [N,3,H,W] in [0,1].

    Reproducible: the same generator state gives the same LR (images within a batch get different
    kernels, noise and JPEG qualities; the resize factors/modes and the final order are per batch).
    """
    if not isinstance(hr, Tensor) or hr.dim() != 4 or hr.shape[1] != 3:
        raise ValueError(f"degrade expects an HR tensor [N,3,H,W], got {tuple(getattr(hr, 'shape', ()))}")
    if not hr.is_floating_point():
        raise ValueError(f"degrade expects a float tensor in [0,1], got {hr.dtype}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    if hr.numel() and (float(hr.min()) < -1e-3 or float(hr.max()) > 1 + 1e-3):
        raise ValueError("degrade expects HR values in [0,1] (got values outside; [-1,1] model tensors?)")
    if not isinstance(cfg, DegradationConfig):
        raise TypeError("cfg must be a DegradationConfig (use DegradationConfig.from_dict)")
    h, w = hr.shape[-2:]
    out_hw = lr_size(h, w, scale)
    x = hr.float().clamp(0, 1)
    if cfg.mode == "bicubic":
        lr = F.interpolate(x, size=out_hw, mode="bicubic", align_corners=False, antialias=True)
        return _quantise(lr)
    if cfg.mode == "video":
        return _quantise(_video(x, scale, out_hw, cfg, generator))
    return _quantise(_realesrgan(x, scale, out_hw, cfg, generator))


def _video(x: Tensor, scale: float, out_hw: tuple[int, int], cfg: DegradationConfig, gen) -> Tensor:
    n = x.shape[0]
    grid = cfg.kernel_range[1]
    sigma = cfg.blur_sigma
    if cfg.blur_ref_scale is not None:
        sigma = tuple(v * scale / cfg.blur_ref_scale for v in sigma)
    k = K.random_blur_kernels(
        gen, n, cfg.kernel_range, cfg.kernel_prob, sigma, cfg.betag_range, cfg.betap_range, cfg.sinc_prob, grid
    )
    blur = _rand(gen, n) < cfg.blur_prob
    x = filter2d(x, torch.where(blur.view(-1, 1, 1), k, K.identity_kernels(n, grid)))
    x = resize(x, out_hw, _random_mode(gen, cfg.resize_modes))
    x = _maybe_noise(x, gen, cfg.noise_prob, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range, cfg.gray_noise_prob)
    return random_codec(x, gen, cfg)


def random_codec(x: Tensor, gen: torch.Generator, cfg: DegradationConfig) -> Tensor:
    """Per image, with prob codec_prob: a real codec round trip (codec, quality and motion drawn from gen)."""
    from .codec import CODECS, compress

    n = x.shape[0]
    apply = _rand(gen, n) < cfg.codec_prob
    which = [_choice(gen, cfg.codec_weights) for _ in range(n)]
    crf = _uniform(gen, *cfg.crf_range, n).round()
    qs = _uniform(gen, *cfg.qscale_range, n).round()
    moving = _rand(gen, n) < cfg.codec_motion_prob
    m = cfg.codec_shift_max
    shifts = torch.randint(-m, m + 1, (n, 2), generator=gen) if m > 0 else torch.zeros((n, 2), dtype=torch.long)
    out = x.clamp(0, 1)
    if not apply.any():
        return out
    arr = (out * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    res = arr.copy()
    for i in range(n):
        if apply[i]:
            codec = CODECS[which[i]]
            q = int(crf[i] if codec == "h264" else qs[i])
            shift = tuple(int(v) for v in shifts[i]) if moving[i] else (0, 0)
            res[i] = compress(arr[i], codec, q, shift)
    return torch.from_numpy(res).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255.0


def _realesrgan(x: Tensor, scale: float, out_hw: tuple[int, int], cfg: DegradationConfig, gen) -> Tensor:
    n, _, h, w = x.shape
    grid = max(cfg.kernel_range[1], cfg.kernel_range2[1], cfg.final_kernel_range[1])
    # kernels first (one per image and stage), like the Real-ESRGAN data loader
    k1 = K.random_blur_kernels(
        gen, n, cfg.kernel_range, cfg.kernel_prob, cfg.blur_sigma, cfg.betag_range, cfg.betap_range, cfg.sinc_prob, grid
    )
    k2 = K.random_blur_kernels(
        gen, n, cfg.kernel_range2, cfg.kernel_prob2, cfg.blur_sigma2, cfg.betag_range2, cfg.betap_range2, cfg.sinc_prob2, grid
    )
    k_final = K.random_final_sinc(gen, n, cfg.final_kernel_range, cfg.final_sinc_prob, grid)
    blur1 = _rand(gen, n) < cfg.blur_prob
    blur2 = _rand(gen, n) < cfg.second_blur_prob
    k1 = torch.where(blur1.view(-1, 1, 1), k1, K.identity_kernels(n, grid))
    k2 = torch.where(blur2.view(-1, 1, 1), k2, K.identity_kernels(n, grid))

    # stage 1
    x = filter2d(x, k1)
    s1 = _random_resize_factor(gen, cfg.resize_prob, cfg.resize_range)
    x = resize(x, (int(h * s1), int(w * s1)), _random_mode(gen, cfg.resize_modes))
    x = _maybe_noise(x, gen, cfg.noise_prob, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range, cfg.gray_noise_prob)
    x = random_jpeg(x, gen, cfg.jpeg_prob, cfg.jpeg_range)

    # stage 2
    x = filter2d(x, k2)
    s2 = _random_resize_factor(gen, cfg.resize_prob2, cfg.resize_range2)
    x = resize(x, (int(h / scale * s2), int(w / scale * s2)), _random_mode(gen, cfg.resize_modes))
    x = _maybe_noise(
        x, gen, cfg.noise_prob2, cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2, cfg.gray_noise_prob2
    )
    final_mode = _random_mode(gen, cfg.resize_modes)
    if float(_rand(gen)) < 0.5:
        x = filter2d(resize(x, out_hw, final_mode), k_final)
        x = random_jpeg(x, gen, cfg.jpeg_prob2, cfg.jpeg_range2)
    else:
        x = random_jpeg(x, gen, cfg.jpeg_prob2, cfg.jpeg_range2)
        x = filter2d(resize(x, out_hw, final_mode), k_final)
    return x


def _maybe_noise(x, gen, prob, gauss_prob, sigma_range, poisson_range, gray_prob):
    n = x.shape[0]
    apply = _rand(gen, n) < prob
    if not apply.any():
        return x
    noisy = random_noise(x, gen, gauss_prob, sigma_range, poisson_range, gray_prob)
    return torch.where(apply.to(x.device).view(n, 1, 1, 1), noisy, x)
