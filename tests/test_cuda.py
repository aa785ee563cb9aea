"""CUDA only (skipped where `torch.cuda.is_available()` is false, the only skip): the defaults on a GPU (bf16
where supported, channels-last networks, batches of 4, pinned asynchronous copies) and --compile give frames
within PSNR 45 dB of the fp32 batch-1 output, on realshort x4 with the bundled checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import videogen
from test_upscale_cli import decode
from upsr_video.process import UpscaleOptions, resolve_batch_size, resolve_precision
from upsr_video.upscale import upscale_video

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA here")

REALSHORT = videogen.VIDEOS / "realshort.mp4"


def _psnr(a: list, b: list) -> float:
    mse = np.mean([np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2) for x, y in zip(a, b)])
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _run(tmp_path, name, **kw):
    o = UpscaleOptions(target=None, scale=4.0, device="cuda", codec="ffv1", pix_fmt="bgr0", **kw)
    s = upscale_video(str(REALSHORT), str(tmp_path / name), o)
    frames, pts, _ = decode(tmp_path / name)
    assert s["frames"] == len(frames) == 36
    return frames, pts


def test_cuda_defaults_and_compile_match_fp32(tmp_path):
    if torch.cuda.is_bf16_supported():
        assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_batch_size(0, "cuda") == 4
    ref, pts = _run(tmp_path, "fp32.mkv", precision="fp32", batch_size=1)
    auto, pts_auto = _run(tmp_path, "auto.mkv")  # precision auto, batch 4
    assert pts_auto == pts
    assert _psnr(auto, ref) >= 45.0
    compiled, _ = _run(tmp_path, "compiled.mkv", precision="fp32", batch_size=4, compile=True)
    assert _psnr(compiled, ref) >= 45.0
