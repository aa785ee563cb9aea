"""One sampling path: truncated start statistics, the shipped calibration table, `--steps auto|N` -> start step
(resolve_start, used by make_plan and compare alike), the diffusion at the output size, and bad values rejected."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from upsr_video.checkpoint import ModelSpec, read_checkpoint, default_checkpoint_path
from upsr_video.diffusion.sampler import start_state
from upsr_video.diffusion.schedule import Schedule
from upsr_video.models.aux import AUX_PRESETS
from upsr_video.process import UpscaleError, UpscaleOptions, make_plan
from upsr_video.startstep import TABLE_PATH, StepsError, load_table, resolve_start

REPORT = Path(__file__).resolve().parents[1] / "reports" / "start_step_calibration.json"

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
    return SimpleNamespace(width=w, height=h, display_size=(Fraction(w), Fraction(h)), time_base=Fraction(1, 25),
                           colour=None, pts=[0])


def _spec(name="upsr-small-default", table=None):
    spec = ModelSpec(aux=AUX_PRESETS["compact-xs"].to_dict(), denoiser={"preset": "x"}, info={"name": name})
    if table is not None:
        spec.info["start_steps"] = table
    return spec


def test_shipped_table_loads_and_matches_the_bundled_checkpoint():
    table = load_table()
    assert TABLE_PATH.exists() and set(table) == {"checkpoint", "factors"}  # the table format, nothing else
    assert set(table["factors"]) >= {"1.5", "2", "3", "4", "6", "8"}
    assert all(v is None or 0 <= v <= 4 for v in table["factors"].values())
    spec, _ = read_checkpoint(default_checkpoint_path())
    assert table["checkpoint"] == spec.info["name"]  # calibrated for the model that ships
    # the curves behind each entry are kept in the report, and the entry follows the stated rule's PSNR bar
    report = json.loads(REPORT.read_text())
    assert report["factors"] == table["factors"] and report["checkpoint"] == table["checkpoint"]
    for f, r in report["curves"].items():
        key = "full" if table["factors"][f] is None else str(table["factors"][f])
        if r["meets_bar"]:
            assert r["curve"][key]["psnr_y"] >= r["bicubic"]["psnr_y"] + 0.5


def test_steps_resolve_to_a_start_step():
    """N denoiser calls start at N-1; N = T is the prior (None); auto reads the table at the nearest factor."""
    spec = _spec("m", {"checkpoint": "m", "factors": {"2": 1, "4": 3, "8": None}})
    assert [resolve_start(spec, 2.0, n) for n in range(1, 6)] == [0, 1, 2, 3, None]
    assert resolve_start(spec, 2.0, "auto") == 1
    assert resolve_start(spec, 2.6, "auto") == 1 and resolve_start(spec, 3.4, "auto") == 3  # nearest factor
    assert resolve_start(spec, 1.25, "auto") == 1 and resolve_start(spec, 16.0, "auto") is None  # clamped; null = full
    assert resolve_start(_spec("m", {"checkpoint": "m", "factors": {"4": 7}}), 4.0, "auto") is None  # outside 0..T-1
    # a table for another checkpoint, or none at all: full sampling
    assert resolve_start(_spec("another", {"checkpoint": "m", "factors": {"2": 1}}), 2.0, "auto") is None
    assert resolve_start(_spec("m", {"checkpoint": None, "factors": {"2": 1}}), 2.0, "auto") == 1  # null = any model


def test_no_table_means_full_sampling(monkeypatch, tmp_path):
    import upsr_video.startstep as startstep

    monkeypatch.setattr(startstep.load_table, "__defaults__", (tmp_path / "absent.json",))
    assert resolve_start(_spec("m"), 2.0, "auto") is None


def test_plan_runs_at_the_output_size_with_the_tables_start():
    table = {"checkpoint": "m", "factors": {"2": 1, "4": 3}}
    spec = _spec("m", table)
    p4 = make_plan(_info(), spec, UpscaleOptions(target=None, scale=4.0), [0])
    assert p4.start_step == 3 and p4.steps == 4 and p4.out_size == (960, 1280)
    p2 = make_plan(_info(), spec, UpscaleOptions(target=None, scale=2.0), [0])
    assert p2.start_step == 1 and p2.steps == 2 and p2.out_size == (480, 640)
    p34 = make_plan(_info(), spec, UpscaleOptions(target="1088x816", scale=None), [0])  # x3.4: the entry of x4
    assert p34.out_size == (816, 1088) and p34.start_step == 3
    assert not hasattr(p2, "model_size") and not hasattr(p2, "resize_mode")
    # a table calibrated for another checkpoint is not used: full sampling
    other = make_plan(_info(), _spec("another", table), UpscaleOptions(target=None, scale=4.0), [0])
    assert other.start_step is None and other.steps == 5
    # an explicit --steps wins over the table
    ex = make_plan(_info(), spec, UpscaleOptions(target=None, scale=2.0, steps=5), [0])
    assert ex.start_step is None and ex.steps == 5
    one = make_plan(_info(), spec, UpscaleOptions(target=None, scale=2.0, steps=1), [0])
    assert one.start_step == 0 and one.steps == 1


@pytest.mark.parametrize("bad", [0, 6, -1, 99, "x"])
def test_steps_outside_the_schedule_are_rejected(bad):
    with pytest.raises(UpscaleError, match=r"--steps must be auto or a number of denoiser calls in 1\.\.5"):
        make_plan(_info(), _spec(), UpscaleOptions(target=None, scale=4.0, steps=bad), [0])
    with pytest.raises(StepsError):
        resolve_start(_spec(), 4.0, bad)


@pytest.mark.parametrize("kw,target", [(dict(target=None, scale=1.0), "320x240"), (dict(target="200x150"), "200x150"),
                                       (dict(target="320x400", fit="pad"), "320x240 (the picture inside 320x400 with --fit pad)")])
def test_input_at_or_above_the_target_is_rejected(kw, target):
    kw.setdefault("scale", None)
    with pytest.raises(UpscaleError) as e:
        make_plan(_info(), _spec(), UpscaleOptions(**kw), [0])
    assert str(e.value) == (f"input is already 320x240, at or above the target {target}: nothing to up-scale; "
                            "use a larger --target or --scale")
