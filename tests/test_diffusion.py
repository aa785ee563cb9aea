"""The schedule, the forward/posterior closed forms, UNW and the sampler, each checked against an independent
computation (numbers from the UPSR facts, Monte Carlo simulation of the Markov chain, Gaussian conditioning)."""
import math

import numpy as np
import pytest
import torch

from upsr_video.diffusion.sampler import derive_seed, gaussian_noise, sample, start_state
from upsr_video.diffusion.schedule import SCHEDULE_PRESETS, Schedule, ScheduleConfig
from upsr_video.diffusion.unw import UNWConfig, noise_weight, uncertainty


def test_upsr_schedule_values():
    s = Schedule(SCHEDULE_PRESETS["upsr"])
    assert s.T == 5 and s.kappa == 2.5
    np.testing.assert_allclose(s.sqrt_etas.numpy(), [0.0316, 0.4300, 0.6339, 0.8166, 0.99], atol=5e-5)
    assert s.kappa * float(s.sqrt_etas[-1]) == pytest.approx(2.475, abs=1e-12)


def test_resshift_v3_schedule_values():
    s = Schedule(SCHEDULE_PRESETS["resshift-v3"])
    assert s.T == 4
    np.testing.assert_allclose(s.sqrt_etas.numpy(), [0.1, 0.5201, 0.7614, 0.99], atol=5e-5)


def test_schedule_formula_by_hand():
    # sqrt(eta_t) = sqrt(eta_1) * b ** (((t/(T-1)) ** p) * (T-1)) written out with math only
    T, p, kappa, mn = 5, 0.2, 2.5, 0.2
    e1 = min(mn / kappa, mn, math.sqrt(0.001))
    b = math.exp(math.log(0.99 / e1) / (T - 1))
    expect = [e1 * b ** (((t / (T - 1)) ** p) * (T - 1)) for t in range(T)]
    s = Schedule()
    np.testing.assert_allclose(s.sqrt_etas.numpy(), expect, rtol=1e-12)
    alphas = s.alphas.numpy()
    assert alphas[0] == pytest.approx(float(s.etas[0]))
    assert (alphas > 0).all()
    np.testing.assert_allclose(np.cumsum(alphas), s.etas.numpy(), rtol=1e-12)


def _fields(shape=(1, 3, 6, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g) * 2 - 1
    y0 = (x0 + 0.3 * torch.randn(shape, generator=g)).clamp(-1, 1)
    w = 0.4 + 0.6 * torch.rand(shape, generator=g)
    return x0.double(), y0.double(), w.double()


@pytest.mark.parametrize("t", [0, 2, 4])
def test_forward_marginal_monte_carlo_matches_markov_chain(t):
    """Simulate the one-step transitions x_k = x_{k-1} + alpha_k (y0-x0) + kappa sqrt(alpha_k) w eps_k from x0 and
    compare the per-pixel mean and variance with the closed-form marginal q_sample uses."""
    s = Schedule()
    x0, y0, w = _fields()
    n = 40000
    gen = torch.Generator().manual_seed(1)
    x = x0.expand(n, *x0.shape[1:]).clone()
    for k in range(t + 1):
        a = float(s.alphas[k])
        x = x + a * (y0 - x0) + s.kappa * math.sqrt(a) * w * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    eta = float(s.etas[t])
    mean_cf = x0 + eta * (y0 - x0)
    var_cf = (s.kappa**2) * eta * w**2
    se_mean = torch.sqrt(var_cf / n)
    assert ((x.mean(0, keepdim=True) - mean_cf).abs() < 5 * se_mean).all()
    rel = (x.var(0, keepdim=True) / var_cf - 1).abs()
    assert rel.max() < 5 * math.sqrt(2 / n)
    # and q_sample draws from the same distribution
    eps = torch.randn((n, *x0.shape[1:]), generator=gen, dtype=torch.float64)
    xq = s.q_sample(x0, y0, t, eps, w)
    assert ((xq.mean(0, keepdim=True) - mean_cf).abs() < 5 * se_mean).all()
    assert (xq.var(0, keepdim=True) / var_cf - 1).abs().max() < 5 * math.sqrt(2 / n)


@pytest.mark.parametrize("t", [1, 3, 4])
def test_posterior_matches_gaussian_conditioning_and_regression(t):
    s = Schedule()
    x0, y0, w = _fields(seed=3)
    k2w2 = s.kappa**2 * w**2
    eta, eta_p = float(s.etas[t]), float(s.etas[t - 1])
    # independent: joint Gaussian of (x_{t-1}, x_t) given x0, conditioning formula
    mu_p, mu_t = x0 + eta_p * (y0 - x0), x0 + eta * (y0 - x0)
    var_p, var_t, cov = k2w2 * eta_p, k2w2 * eta, k2w2 * eta_p
    x_t = mu_t + 0.7 * torch.sqrt(var_t)
    cond_mean = mu_p + cov / var_t * (x_t - mu_t)
    cond_var = var_p - cov**2 / var_t
    mean, var = s.posterior_mean_var(x_t, x0, t, w)
    torch.testing.assert_close(mean, cond_mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(var, cond_var, rtol=1e-10, atol=1e-12)
    # Monte Carlo: regress x_{t-1} on x_t per pixel
    n = 40000
    gen = torch.Generator().manual_seed(7)
    xp = s.q_sample(x0.expand(n, -1, -1, -1), y0, t - 1, torch.randn((n, *x0.shape[1:]), generator=gen, dtype=torch.float64), w)
    a = float(s.alphas[t])
    xt = xp + a * (y0 - x0) + s.kappa * math.sqrt(a) * w * torch.randn(xp.shape, generator=gen, dtype=torch.float64)
    slope = ((xp - xp.mean(0)) * (xt - xt.mean(0))).mean(0) / xt.var(0)
    torch.testing.assert_close(slope, torch.full_like(slope, eta_p / eta), atol=0.02, rtol=0)
    resid = xp - slope * xt
    assert (resid.var(0) / var[0] - 1).abs().max() < 0.05


def test_prior_is_marginal_at_last_step_with_x0_irrelevant_up_to_eta():
    s = Schedule()
    x0, y0, w = _fields()
    eps = torch.randn_like(x0)
    prior = s.prior_sample(y0, eps, w)
    torch.testing.assert_close(prior, y0 + 2.475 * w * eps)
    # the marginal at T-1 differs from the prior only by (1 - eta_T)(x0 - y0)
    diff = s.q_sample(x0, y0, 4, eps, w) - prior
    torch.testing.assert_close(diff, (1 - float(s.etas[-1])) * (x0 - y0))


def test_input_scale():
    s = Schedule()
    for t in range(5):
        assert s.input_scale(t) == pytest.approx(math.sqrt(float(s.etas[t]) * 2.5**2 * 0.3 + 0.25))


def test_sampler_with_oracle_returns_x0_exactly_and_stays_on_the_forward_manifold():
    s = Schedule()
    x0, y0, w = _fields(shape=(2, 3, 8, 8))
    eps = torch.randn_like(x0)
    seen = []

    def oracle(x_scaled, t):
        x = x_scaled * s.input_scale(t)
        seen.append((t, x))
        return x0

    out = sample(s, oracle, y0, y0, eps, w)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)
    assert [t for t, _ in seen] == [4, 3, 2, 1, 0]
    # started on the forward marginal (anchor = x0), every x_t stays on it with the same eps
    seen.clear()
    out = sample(s, oracle, y0, x0, eps, w, start_step=4)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)
    for t, x in seen:
        torch.testing.assert_close(x, s.q_sample(x0, y0, t, eps, w), rtol=0, atol=1e-10)


def test_truncated_start_marginal_and_range():
    s = Schedule()
    x0, y0, w = _fields()
    g = x0 + 0.01
    eps = torch.randn_like(x0)
    for st in range(5):
        torch.testing.assert_close(start_state(s, y0, g, eps, w, st), s.q_sample(g, y0, st, eps, w))
    with pytest.raises(ValueError, match="start step"):
        start_state(s, y0, g, eps, w, 5)
    with pytest.raises(ValueError, match="start step"):
        start_state(s, y0, g, eps, w, -1)


def test_unw_shape_limits_and_baseline():
    gen = torch.Generator().manual_seed(0)
    y0 = torch.rand(2, 3, 9, 7, generator=gen) * 2 - 1
    g = y0 + 0.5 * torch.randn(2, 3, 9, 7, generator=gen)
    cfg = UNWConfig(b_u=0.4, psi_max=0.1)
    w = noise_weight(g, y0, cfg)
    assert w.shape == y0.shape
    assert float(w.min()) >= 0.4 - 1e-7 and float(w.max()) <= 1.0 + 1e-7
    psi = ((g - y0) / 2).abs()
    # independent elementwise formula
    expect = torch.where(psi >= 0.1, torch.ones_like(psi), 0.4 + 0.6 * psi / 0.1)
    torch.testing.assert_close(w, expect)
    assert torch.equal(noise_weight(y0, y0, cfg), torch.full_like(y0, 0.4))
    assert torch.equal(noise_weight(g, y0, UNWConfig(b_u=1.0)), torch.ones_like(y0))
    torch.testing.assert_close(uncertainty(g, y0), (g - y0) / 2)
    with pytest.raises(ValueError):
        UNWConfig(b_u=1.5)


def test_noise_is_counter_based():
    a = gaussian_noise((1, 3, 4, 4), 42, "shot", 3)
    b = gaussian_noise((1, 3, 4, 4), 42, "shot", 3)
    c = gaussian_noise((1, 3, 4, 4), 42, "shot", 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert derive_seed(1, "x") == derive_seed(1, "x") != derive_seed(1, "y")
    big = gaussian_noise((200000,), 0)
    assert abs(float(big.mean())) < 0.01 and abs(float(big.std()) - 1) < 0.01


def test_schedule_config_roundtrip_and_validation():
    c = ScheduleConfig(steps=4, power=0.3, kappa=2.0, sqrt_eta_floor=None)
    assert ScheduleConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError):
        ScheduleConfig.from_dict({"steps": 5, "bogus": 1})
