"""The Diff-SR target-resolution mode: truncated start statistics, the shipped calibration table, and the plan's use
of it (start step and resize mode per factor), with bad start steps rejected."""
from __future__ import annotations

import json
from fractions import Fraction
from types import SimpleNamespace

import pytest
import torch

from upsr_video.checkpoint import ModelSpec, read_checkpoint, default_checkpoint_path
from upsr_video.diffusion.sampler import start_state
from upsr_video.diffusion.schedule import Schedule
from upsr_video.models.aux import AUX_PRESETS
from upsr_video.process import UpscaleError, UpscaleOptions, make_plan
from upsr_video.startstep import TABLE_PATH, load_table

# sqrt(eta_t) of UPSR's schedule (T=5, p=0.2, kappa=2.5, min_noise=0.2), from the paper's facts sheet
SQRT_ETA = [0.0316, 0.4300, 0.6339, 0.8166, 0.99]
KAPPA = 2.5


@pytest.mark.parametrize("s", range(5))
def test_truncated_start_has_the_forward_marginal_at_s(s):
    """x_s = g + eta_s (y0 - g) + kappa sqrt(eta_s) w eps: Monte Carlo mean and variance per pixel, by hand."""
    sched = Schedule()
    gen = torch.Generator().manual_seed(s)
    y0 = torch.rand((1, 3, 4, 5), generator=gen) * 2 - 1
    g = torch.rand((1, 3, 4, 5), generator=gen) * 2 - 1
    w = 0.4 + 0.6 * torch.rand((1, 3, 4, 5), generator=gen)
    n = 40000
    eps = torch.randn((n, 3, 4, 5), generator=gen, dtype=torch.float64)
    x = start_state(sched, y0.double().expand(n, -1, -1, -1), g.double().expand(n, -1, -1, -1), eps, w.double(), s)
    eta = SQRT_ETA[s] ** 2
    mean = g.double() + eta * (y0.double() - g.double())
    var = (KAPPA * SQRT_ETA[s] * w.double()) ** 2
    se = (var / n).sqrt()
    assert ((x.mean(0, keepdim=True) - mean).abs() < 5 * se + 1e-3).all()
    assert torch.allclose(x.var(0, keepdim=True), var, rtol=0.05, atol=1e-4)


def test_last_step_start_is_the_prior_up_to_the_anchor():
    """s = T-1 differs from ResShift's prior y0 + kappa sqrt(eta_T) w eps only by (1 - eta_T)(g - y0)."""
    sched = Schedule()
    gen = torch.Generator().manual_seed(7)
    y0, g, eps = (torch.randn((1, 3, 6, 6), generator=gen) for _ in range(3))
    w = torch.full_like(y0, 0.7)
    prior = y0 + KAPPA * SQRT_ETA[-1] * w * eps
    torch.testing.assert_close(start_state(sched, y0, g, eps, w, None), prior, atol=2e-4, rtol=0)
    torch.testing.assert_close(start_state(sched, y0, g, eps, w, 4) - prior, (1 - SQRT_ETA[-1] ** 2) * (g - y0),
                               atol=2e-4, rtol=0)


def _info(w=320, h=240):
    return SimpleNamespace(width=w, height=h, time_base=Fraction(1, 25), colour=None, pts=[0])


def _spec(name="upsr-small-default", table=None):
    spec = ModelSpec(aux=AUX_PRESETS["compact-xs"].to_dict(), denoiser={"preset": "x"}, info={"name": name})
    if table is not None:
        spec.info["start_steps"] = table
    return spec


def test_shipped_table_loads_and_matches_the_bundled_checkpoint():
    table = load_table()
    assert TABLE_PATH.exists() and set(table["factors"]) >= {"1.5", "2", "3", "4", "6", "8"}
    assert all(v is None or 0 <= v <= 4 for v in table["factors"].values())
    spec, _ = read_checkpoint(default_checkpoint_path())
    assert table["checkpoint"] == spec.info["name"]  # calibrated for the model that ships
    # the curves behind each entry are stored, and the entry follows the stated rule's PSNR bar when it can
    for f, r in table["curves"].items():
        key = "full" if table["factors"][f] is None else str(table["factors"][f])
        if r["meets_bar"]:
            assert r["curve"][key]["psnr_y"] >= r["bicubic"]["psnr_y"] + 0.5


def test_plan_uses_the_table():
    table = {"checkpoint": "m", "factors": {"2": 1, "4": 3}, "modes": {"2": "truncated", "4": "direct"}}
    spec = _spec("m", table)
    p4 = make_plan(_info(), spec, UpscaleOptions(target=None, scale=4.0), [0])
    assert p4.start_step == 3 and p4.resize_mode == "direct"  # x4 is the trained factor: the table's s
    p2 = make_plan(_info(), spec, UpscaleOptions(target=None, scale=2.0), [0])
    assert p2.start_step == 1 and p2.resize_mode == "direct" and p2.model_size == (480, 640)
    # a measured "resize" default runs the model at x4 and resizes
    spec_r = _spec("m", {**table, "modes": {"2": "resize"}})
    pr = make_plan(_info(), spec_r, UpscaleOptions(target=None, scale=2.0), [0])
    assert pr.resize_mode == "resize" and pr.model_size == (960, 1280)
    # a table calibrated for another checkpoint is not used: full sampling
    other = make_plan(_info(), _spec("another", table), UpscaleOptions(target=None, scale=4.0), [0])
    assert other.start_step is None
    # explicit options win over the table
    ex = make_plan(_info(), spec, UpscaleOptions(target=None, scale=2.0, start_step=None, resize_mode="resize"), [0])
    assert ex.start_step is None and ex.resize_mode == "resize"


@pytest.mark.parametrize("bad", [5, -1, 99])
def test_start_step_outside_the_schedule_is_rejected(bad):
    with pytest.raises(UpscaleError, match=r"--start-step must be in 0\.\.4"):
        make_plan(_info(), _spec(), UpscaleOptions(target=None, scale=4.0, start_step=bad), [0])
