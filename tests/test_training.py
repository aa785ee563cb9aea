"""A tiny training run reduces the loss, resumes exactly, and its checkpoint loads in the inference pipeline."""
from pathlib import Path

import pytest
import torch

from training.config import TrainConfig
from training.trainer import Trainer
from upsr_video.checkpoint import load_pipeline

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRAIN = str(SHARED / "data/images/train_hr")
LPIPS_W = str(SHARED / "weights/lpips_alex_v0.1.safetensors")


def _cfg(tmp, kind="g", **kw):
    base = dict(
        kind=kind, out=str(tmp), seed=3, steps=8, batch=4, patch=48, lr=2e-3, warmup=2, ema=0.9,
        log_every=100, val_every=0, ckpt_every=4, aux="compact-xs",
        data={"sources": [TRAIN], "holdout_every": 20, "video_frames_per_clip": 0},
        degradation={"mode": "bicubic"}, loss={"l1": 1.0}, lpips_weights=None,
    )
    base.update(kw)
    return TrainConfig.from_dict(base)


def _probe_loss(tr: Trainer) -> float:
    """Loss on one fixed batch (a step index never used for training), without touching the model."""
    tr.model.eval()
    with torch.no_grad():
        loss, _ = tr.loss(10**6)
    tr.model.train()
    return float(loss)


def test_g_training_reduces_loss(tmp_path):
    tr = Trainer(_cfg(tmp_path / "a", steps=30, lr=3e-3), log_stdout=False)
    with torch.no_grad():  # start away from the zero-initialised (= bicubic) head so there is loss to remove
        tr.model.body[-1].weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    before = _probe_loss(tr)
    tr.train()
    after = _probe_loss(tr)
    assert after < 0.95 * before, (before, after)


def test_resume_reproduces_the_uninterrupted_loss_sequence(tmp_path):
    straight = Trainer(_cfg(tmp_path / "straight"), log_stdout=False).train()
    first = Trainer(_cfg(tmp_path / "split"), log_stdout=False)
    part1 = first.train(until=4)
    del first  # "crash": only what was saved on disk survives
    second = Trainer(_cfg(tmp_path / "split"), log_stdout=False)
    assert second.step == 4
    part2 = second.train()
    assert len(straight) == 8 and part1 + part2 == straight
    torch.testing.assert_close(dict(second.model.named_parameters())["body.0.weight"],
                               dict(Trainer(_cfg(tmp_path / "straight"), log_stdout=False).model.named_parameters())["body.0.weight"],
                               rtol=0, atol=0)


def test_exported_g_checkpoint_loads_in_pipeline(tmp_path):
    tr = Trainer(_cfg(tmp_path / "g", steps=2), log_stdout=False)
    tr.train()
    path = tr.export(tmp_path / "g.safetensors")
    spec, pipe = load_pipeline(path)
    assert not pipe.is_diffusion and spec.info["trained_steps"] == 2
    out = pipe(torch.rand(1, 3, 12, 10) * 2 - 1)
    assert out.shape == (1, 3, 48, 40)


def test_fine_tuning_starts_from_the_given_checkpoint_and_resumes_from_its_own_state(tmp_path):
    first = Trainer(_cfg(tmp_path / "a", steps=3), log_stdout=False)
    first.train()
    ckpt = first.export(tmp_path / "g.safetensors")
    ft = Trainer(_cfg(tmp_path / "ft", steps=4, init_from=str(ckpt)), log_stdout=False)
    for k, v in first.ema.model.state_dict().items():  # the export holds the EMA weights
        assert torch.equal(ft.model.state_dict()[k], v), k
    ft.train(until=2)
    resumed = Trainer(_cfg(tmp_path / "ft", steps=4, init_from=str(ckpt)), log_stdout=False)
    assert resumed.step == 2
    for k, v in ft.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    with pytest.raises(ValueError, match="does not match"):
        Trainer(_cfg(tmp_path / "bad", aux="compact-s", init_from=str(ckpt)), log_stdout=False)


def test_a_residual_g_denoiser_starts_a_g_xt_one_with_lambda_at_its_initial_value(tmp_path):
    """init_from a denoiser with `residual: g` into the same network with `residual: g_xt`: every weight is
    copied, lambda_t keeps its Wiener initial value, and on inputs with x_t = g the two give the same x0."""
    g_run = Trainer(_cfg(tmp_path / "g", steps=2), log_stdout=False)
    g_run.train()
    g_ckpt = str(g_run.export(tmp_path / "g.safetensors"))
    kw = dict(kind="upsr", aux_checkpoint=g_ckpt, loss={"mse": 1.0}, batch=2, patch=64)
    src = Trainer(_cfg(tmp_path / "src", steps=2, denoiser={"preset": "upsr-tiny", "residual": "g"}, **kw),
                  log_stdout=False)
    src.train()
    ckpt = str(src.export(tmp_path / "den.safetensors"))
    ft = Trainer(_cfg(tmp_path / "ft", init_from=ckpt, denoiser={"preset": "upsr-tiny", "residual": "g_xt"}, **kw),
                 log_stdout=False)
    exported = src.ema.model.state_dict()
    wiener = torch.tensor(ft.schedule.xt_wiener_weights(), dtype=torch.float32)
    for k, v in ft.model.state_dict().items():
        assert torch.equal(v, wiener if k == "xt_blend" else exported[k]), k
    assert float(ft.model.xt_blend.detach()[0]) > 0.5  # the Wiener weight at t = 0, not zero
    y0_src = Trainer(_cfg(tmp_path / "y0", denoiser={"preset": "upsr-tiny", "residual": "y0"}, **kw), log_stdout=False)
    y0_ckpt = str(y0_src.export(tmp_path / "y0.safetensors"))
    with pytest.raises(ValueError, match="does not match"):  # a y0-residual network is not the g_xt one
        Trainer(_cfg(tmp_path / "ft2", init_from=y0_ckpt, denoiser={"preset": "upsr-tiny", "residual": "g_xt"}, **kw),
                log_stdout=False)
    src.ema.model.eval()
    ft.model.eval()
    gen = torch.Generator().manual_seed(0)
    g = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    y0 = (g + 0.1 * torch.randn(2, 3, 64, 64, generator=gen)).clamp(-1, 1)
    t = torch.tensor([0, 3])
    x_in = g / ft.schedule.input_scale_tensor(t, g)  # x_t = g: lambda_t (x_t - g) vanishes
    with torch.no_grad():
        torch.testing.assert_close(ft.model(x_in, t, g, y0), src.ema.model(x_in, t, g, y0), atol=1e-5, rtol=0)


def test_refuses_eval_sets_as_training_data(tmp_path):
    with pytest.raises(ValueError, match="evaluation set"):
        Trainer(_cfg(tmp_path / "bad", data={"sources": [str(SHARED / "data/images/Set14")]}), log_stdout=False)


def _captured_inputs(tr: Trainer, step: int) -> torch.Tensor:
    """x_t (unscaled) as the denoiser receives it in the loss of `step` (the test wraps the model's forward)."""
    seen = []
    forward = tr.model.forward

    def spy(x_in, t, g, y0):
        seen.append(x_in * tr.schedule.input_scale_tensor(t, x_in))
        return forward(x_in, t, g, y0)

    tr.model.forward = spy
    with torch.no_grad():
        tr.loss(step)
    tr.model.forward = forward
    return seen[0]


def test_start_prob_trains_on_the_samplers_start_state(tmp_path):
    """start_prob = 1: every x_t is the marginal anchored on g (the sampler's truncated start), so it differs
    from the forward marginal of the ground truth, same t and eps, by exactly (1 - eta_t) (g - x0); 0.5 mixes."""
    from upsr_video.diffusion.sampler import derive_seed
    from upsr_video.pipeline import make_condition

    g_run = Trainer(_cfg(tmp_path / "g", steps=2), log_stdout=False)
    g_run.train()
    g_ckpt = str(g_run.export(tmp_path / "g.safetensors"))
    kw = dict(kind="upsr", aux_checkpoint=g_ckpt, denoiser="upsr-tiny", loss={"mse": 1.0}, batch=6, patch=64)
    runs = {p: Trainer(_cfg(tmp_path / f"u{p}", start_prob=p, **kw), log_stdout=False) for p in (0.0, 0.5, 1.0)}
    step = 5
    xt = {p: _captured_inputs(tr, step) for p, tr in runs.items()}
    tr = runs[0.0]
    lr01, hr01, _ = tr.batch(step)
    x0 = hr01 * 2 - 1
    y0, g = make_condition(tr.aux, lr01 * 2 - 1, x0.shape[-2:])
    gen = torch.Generator().manual_seed(derive_seed(3, "diffusion", step))  # the trainer's t draw
    t = torch.randint(tr.schedule.T, (x0.shape[0],), generator=gen)
    eta = tr.schedule.etas[t].float().view(-1, 1, 1, 1)
    shift = (1 - eta) * (g - x0)
    assert shift.abs().mean() > 1e-3  # g is not the ground truth: the two states differ
    torch.testing.assert_close(xt[1.0] - xt[0.0], shift, atol=1e-4, rtol=0)
    at_start = [torch.allclose(xt[0.5][i], xt[1.0][i], atol=1e-5) for i in range(x0.shape[0])]
    at_x0 = [torch.allclose(xt[0.5][i], xt[0.0][i], atol=1e-5) for i in range(x0.shape[0])]
    assert all(a != b for a, b in zip(at_start, at_x0)) and any(at_start) and any(at_x0)


def test_t_weights_set_the_share_of_each_diffusion_step(tmp_path):
    """t_weights draws the steps in proportion (a zero weight never), the loss trains at the drawn step (all
    weight on t = 0: x_t is the forward marginal at 0, checked against the schedule's formula), and the
    default stays torch.randint's uniform draw."""
    from upsr_video.diffusion.sampler import derive_seed
    from upsr_video.diffusion.unw import noise_weight
    from upsr_video.pipeline import make_condition

    g_run = Trainer(_cfg(tmp_path / "g", steps=2), log_stdout=False)
    g_run.train()
    g_ckpt = str(g_run.export(tmp_path / "g.safetensors"))
    kw = dict(kind="upsr", aux_checkpoint=g_ckpt, denoiser="upsr-tiny", loss={"mse": 1.0}, batch=6, patch=64)
    weighted = Trainer(_cfg(tmp_path / "w", t_weights=[3, 1, 1, 1, 0], **kw), log_stdout=False)
    t = weighted.draw_steps(30000, torch.Generator().manual_seed(0))
    share = torch.bincount(t, minlength=5).double() / t.numel()
    torch.testing.assert_close(share, torch.tensor([0.5, 1 / 6, 1 / 6, 1 / 6, 0], dtype=torch.float64), atol=0.01, rtol=0)
    uniform = Trainer(_cfg(tmp_path / "u", **kw), log_stdout=False)
    assert torch.equal(uniform.draw_steps(50, torch.Generator().manual_seed(1)),
                       torch.randint(5, (50,), generator=torch.Generator().manual_seed(1)))

    at_zero = Trainer(_cfg(tmp_path / "z", t_weights=[1, 0, 0, 0, 0], **kw), log_stdout=False)
    step = 3
    xt = _captured_inputs(at_zero, step)
    lr01, hr01, _ = at_zero.batch(step)
    x0 = hr01 * 2 - 1
    y0, g = make_condition(at_zero.aux, lr01 * 2 - 1, x0.shape[-2:])
    gen = torch.Generator().manual_seed(derive_seed(3, "diffusion", step))
    assert torch.equal(at_zero.draw_steps(6, gen), torch.zeros(6, dtype=torch.long))  # the loss's draw of t
    eps = torch.randn(x0.shape, generator=gen)
    eta0 = float(at_zero.schedule.etas[0])
    w = noise_weight(g, y0, at_zero.unw)
    torch.testing.assert_close(xt, x0 + eta0 * (y0 - x0) + at_zero.schedule.kappa * eta0 ** 0.5 * w * eps,
                               atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="t_weights"):
        Trainer(_cfg(tmp_path / "bad", t_weights=[1, 1], **kw), log_stdout=False)


def test_data_seed_changes_the_training_draws_not_the_init(tmp_path):
    """A continuation with its own data_seed sees other crops than its parent (same seed), from the same init."""
    base = Trainer(_cfg(tmp_path / "a"), log_stdout=False)
    same = Trainer(_cfg(tmp_path / "b", data_seed=3), log_stdout=False)  # = seed: the draws of `base`
    other = Trainer(_cfg(tmp_path / "c", data_seed=4), log_stdout=False)
    lr_a, hr_a, _ = base.batch(0)
    lr_b, hr_b, _ = same.batch(0)
    _, hr_c, _ = other.batch(0)
    assert torch.equal(hr_a, hr_b) and torch.equal(lr_a, lr_b)
    assert not torch.equal(hr_a, hr_c)
    for k, v in base.model.state_dict().items():
        assert torch.equal(other.model.state_dict()[k], v), k


def test_g_can_start_from_published_weights_lifted_to_the_output_grid(tmp_path):
    from safetensors.torch import load_file

    from upsr_video.models.rlfn import RLFNOut

    rlfn = str(SHARED / "weights/rlfn_ntire2022_x4.safetensors")
    tr = Trainer(_cfg(tmp_path / "r", aux="rlfn-out", init_from=rlfn), log_stdout=False)
    for k, v in RLFNOut.lift_lr_grid(load_file(rlfn)).items():
        assert torch.equal(tr.model.state_dict()[k], v), k
    with pytest.raises(ValueError, match="do not fit"):  # bare weights of another network: one clear error
        Trainer(_cfg(tmp_path / "bad", init_from=rlfn), log_stdout=False)


def test_loader_workers_give_the_same_run(tmp_path):
    """Batches built ahead by loader processes are the batches of the same steps: identical losses and weights."""
    alone = Trainer(_cfg(tmp_path / "w0", steps=6), log_stdout=False)
    ahead = Trainer(_cfg(tmp_path / "w2", steps=6, workers=2), log_stdout=False)
    assert ahead.train() == alone.train()
    for k, v in alone.model.state_dict().items():
        assert torch.equal(ahead.model.state_dict()[k], v), k


def test_time_budget_sets_the_step_count_at_the_end_of_the_warm_up(tmp_path):
    """The run stops near its budget with cfg.steps set from the measured speed; that count, given as `steps`,
    reproduces the run exactly (the warm-up's learning rates do not depend on it)."""
    import json
    import time

    cfg = _cfg(tmp_path / "b", steps=10**6, warmup=6)
    tr = Trainer(cfg, log_stdout=False)
    t0 = time.time()
    losses = tr.train(time_budget=4.0)
    took = time.time() - t0
    rec = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    budget = [r for r in rec if r.get("event") == "time_budget"]
    assert len(budget) == 1 and budget[0]["step"] == 6 and budget[0]["steps"] == tr.cfg.steps == tr.step
    assert tr.cfg.steps > 6 and len(losses) == tr.step
    assert took < 4.0 * 1.5, took  # generous: the speed of the first steps varies on a loaded machine
    again = Trainer(_cfg(tmp_path / "c", steps=tr.cfg.steps, warmup=6), log_stdout=False).train()
    assert again == losses
    with pytest.raises(ValueError, match="time budget"):
        tr.train(time_budget=4.0)  # past the warm-up: the count it logged resumes it


def test_ema_update_is_the_decayed_average():
    """EMA weights after an update equal d * ema + (1 - d) * weights with the warm-started decay d."""
    from training.trainer import EMA

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = EMA(net, decay=0.999)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        net[1].running_mean.fill_(0.5)
    before = [p.clone() for p in ema.model.parameters()]
    ema.update(net, step=20)
    d = min(0.999, 21 / 30)
    for pe, p0, p in zip(ema.model.parameters(), before, net.parameters()):
        torch.testing.assert_close(pe, d * p0 + (1 - d) * p, rtol=0, atol=1e-6)
    assert torch.equal(ema.model[1].running_mean, net[1].running_mean)  # buffers are copied, not averaged


def test_config_extends_its_parent(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text("kind: upsr\nsteps: 300\nlr: 0.001\ndegradation: {mode: video, codec_prob: 0.5}\n")
    (tmp_path / "sub" / "child.yaml").write_text("extends: ../base.yaml\nsteps: 40\ndegradation: {mode: bicubic}\n")
    (tmp_path / "sub" / "grandchild.yaml").write_text("extends: child.yaml\nlr: 0.0005\n")
    cfg = TrainConfig.load(tmp_path / "sub" / "grandchild.yaml", {"batch": 2})
    assert (cfg.kind, cfg.steps, cfg.lr, cfg.batch) == ("upsr", 40, 0.0005, 2)
    assert cfg.degradation == {"mode": "bicubic"}  # a child's key replaces the parent's whole


def test_config_extends_loop_is_one_clear_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ValueError, match="loops back"):
        TrainConfig.load(tmp_path / "a.yaml")


def test_shipped_configs_load():
    """Every config in configs/ resolves (parents found, keys known)."""
    root = Path(__file__).resolve().parents[1] / "configs"
    for p in sorted(root.glob("*.yaml")):
        TrainConfig.load(p)
