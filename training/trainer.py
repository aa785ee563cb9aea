"""Training loops for g and for the UPSR denoiser.

One loop serves both: AdamW, linear warm-up then cosine decay, EMA, gradient clipping, autocast on GPU,
periodic validation (PSNR-Y / LPIPS on held-out training-pool images), JSON-lines logs, resumable state.
Every random draw of step k (which patches, crops, degradation, scale, t, eps) comes from generators seeded
with (seed, k), so a run resumed at step k produces the same loss sequence as an uninterrupted one.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from safetensors import safe_open
from safetensors.torch import load_file

from upsr_video.checkpoint import META_KEY, ModelSpec, load_checkpoint, save_checkpoint
from upsr_video.diffusion.sampler import derive_seed
from upsr_video.diffusion.schedule import SCHEDULE_PRESETS, Schedule, ScheduleConfig
from upsr_video.diffusion.unw import UNWConfig, noise_weight
from upsr_video.models.aux import AUX_PRESETS, AuxConfig, build_aux
from upsr_video.pipeline import UPSRPipeline, make_condition

from .config import TrainConfig
from .state import has_state, load_state, save_state


def _schedule_cfg(s) -> ScheduleConfig:
    return SCHEDULE_PRESETS[s] if isinstance(s, str) else ScheduleConfig.from_dict(s)


def _aux_cfg(a) -> AuxConfig:
    return AUX_PRESETS[a] if isinstance(a, str) else AuxConfig.from_dict(a)


def _denoiser_cfg_dict(d, schedule: Schedule) -> dict:
    """A preset name, a full config dict, or {"preset": name, **overrides} (e.g. g_cond: false for the ablation).
    A "g_xt" residual without explicit values gets the schedule's Wiener blend weights and input scales."""
    from upsr_video.models.unet import DENOISER_PRESETS, DenoiserConfig

    d = DENOISER_PRESETS[d].to_dict() if isinstance(d, str) else dict(d)
    if "preset" in d:
        base = DENOISER_PRESETS[d.pop("preset")].to_dict()
        base.update(d)
        d = base
    if d.get("residual") == "g_xt" and not d.get("xt_blend"):
        d["xt_blend"] = schedule.xt_wiener_weights()
        d["input_scales"] = [schedule.input_scale(t) for t in range(schedule.T)]
    return DenoiserConfig.from_dict(d).to_dict()


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # warm start: short runs would otherwise average in the random init
        d = min(self.decay, (1 + step) / (10 + step))
        # one multi-tensor kernel for all parameters rather than two small ones each (a GPU step is launch-bound)
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1 - d)
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)


def _is_bare_weights(path: str) -> bool:
    """A single safetensors file without an upsr-video config: someone else's published state dict."""
    p = Path(path)
    if not p.is_file():
        return False
    with safe_open(str(p), framework="pt") as f:
        return META_KEY not in (f.metadata() or {})


def _one_thread(_worker: int) -> None:
    """Loader processes build one batch each on one core: many of them, not threads inside each."""
    torch.set_num_threads(1)


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.lr_schedule == "constant":
        return cfg.lr
    prog = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, prog))))


class Trainer:
    def __init__(self, cfg: TrainConfig, device: Optional[str] = None, log_stdout: bool = True):
        from .data import HRPatchDataset, StepBatches, holdout_split
        from .degradations import DegradationConfig

        self.cfg = cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log_stdout = log_stdout
        self.deg_cfg = DegradationConfig.from_dict(cfg.degradation)
        self.val_deg_cfg = DegradationConfig.from_dict(cfg.val_degradation) if cfg.val_degradation else self.deg_cfg
        train_src, self.val_files = holdout_split(cfg.data["sources"], cfg.data.get("holdout_every", 20))
        self.dataset = HRPatchDataset(
            train_src, patch=cfg.patch, seed=cfg.train_seed, video_frames_per_clip=cfg.data.get("video_frames_per_clip", 8)
        )
        self.batches = StepBatches(self.dataset, self.deg_cfg, cfg.train_seed, cfg.batch, cfg.scales)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch sizes: pick the fastest convolution once
        self.schedule = Schedule(_schedule_cfg(cfg.schedule))
        tw = cfg.t_weights
        if tw is not None and (len(tw) != self.schedule.T or min(tw) < 0 or sum(tw) <= 0):
            raise ValueError(f"t_weights: {self.schedule.T} non-negative weights, one per step, not all 0; got {list(tw)}")
        self.unw = UNWConfig.from_dict(cfg.unw)
        self.lpips = None  # loaded when the weights exist: a loss term, and validation reports it
        self._maybe_lpips()
        with torch.random.fork_rng(devices=[]):  # weight init from the run's seed, global RNG untouched
            torch.manual_seed(derive_seed(cfg.seed, "init"))
            self._build_models()
        if cfg.init_from:
            self._init_weights(cfg.init_from)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.ema = EMA(self.model, cfg.ema)
        self.step = 0
        if has_state(self.out / "state"):
            self.step = load_state(self.out / "state", self.model, self.ema.model, self.opt)
            self._log({"event": "resume", "step": self.step})

    # -- setup -------------------------------------------------------------------------------------
    def _maybe_lpips(self):
        path = self.cfg.lpips_weights
        if path and Path(path).exists():
            from upsr_video.eval.lpips_alex import load_lpips

            self.lpips = load_lpips(path, device=str(self.device))
        elif self.cfg.loss.get("lpips", 0) > 0:
            raise FileNotFoundError(f"LPIPS weights not found: {path} (set lpips_weights in the config)")

    def _build_models(self):
        cfg = self.cfg
        if cfg.kind == "g":
            self.aux_cfg = _aux_cfg(cfg.aux)
            self.model = build_aux(self.aux_cfg).to(self.device)
            self.aux = None
        elif cfg.kind == "upsr":
            from upsr_video.models.unet import build_denoiser

            if not cfg.aux_checkpoint:
                raise ValueError("training the denoiser needs aux_checkpoint (a trained g)")
            spec, _, aux = load_checkpoint(cfg.aux_checkpoint)
            self.aux_cfg = AuxConfig.from_dict(spec.aux)
            self.aux = aux.to(self.device).eval()
            for p in self.aux.parameters():
                p.requires_grad_(False)
            self.den_cfg = _denoiser_cfg_dict(cfg.denoiser, self.schedule)
            self.model = build_denoiser(self.den_cfg).to(self.device)
        else:
            raise ValueError(f"unknown training kind {cfg.kind!r} (g or upsr)")

    def _init_weights(self, path: str) -> None:
        """Fine-tuning: this run's network starts from a trained one of the same architecture (a resume
        from the run's own state replaces these weights). For g, `path` may also be a bare state dict of
        published weights (no upsr-video config, e.g. RLFN x4); an output-grid g that can lift LR-grid weights
        (`lift_lr_grid`) starts from them lifted."""
        if self.cfg.kind == "g" and _is_bare_weights(path):
            state = load_file(path)
            lift = getattr(self.model, "lift_lr_grid", None)
            try:
                self.model.load_state_dict(lift(state) if lift else state, strict=True)
            except (RuntimeError, KeyError) as e:
                first = str(e).strip().splitlines()[0]
                raise ValueError(f"init_from {path}: the weights do not fit this config's g ({first})") from None
            return
        spec, den, aux = load_checkpoint(path)
        src = aux if self.cfg.kind == "g" else den
        if src is None:
            raise ValueError(f"init_from {path}: the checkpoint has no denoiser")
        state = src.state_dict()
        if self.cfg.kind == "upsr" and src.config.residual == "g" and self.model.config.residual == "g_xt":
            # a residual-on-g denoiser is the g_xt network with lambda_t = 0: it starts from the same
            # weights with lambda_t at its Wiener initial value, so it learns to use x_t from there
            state = {**state, "xt_blend": self.model.xt_blend.detach().clone()}
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ValueError(f"init_from {path}: its network does not match this config's ({first})") from None

    # -- data --------------------------------------------------------------------------------------
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(lr, hr) in [0,1] and the scale, all derived from (train_seed, step)."""
        return self.batches[step]

    def _batches_from(self, start: int, end: int):
        """The batches of steps start..end-1 in order; with cfg.workers > 0 built ahead by loader processes
        (the CPU-side degradations, codec round trips included, would otherwise leave a GPU waiting)."""
        if not self.cfg.workers:
            return (self.batches[s] for s in range(start, end))
        loader = torch.utils.data.DataLoader(
            self.batches, batch_size=None, sampler=range(start, end), num_workers=self.cfg.workers,
            prefetch_factor=4, worker_init_fn=_one_thread, pin_memory=self.device.type == "cuda")
        return iter(loader)

    # -- losses ------------------------------------------------------------------------------------
    def _lpips(self, a, b):
        return self.lpips(a.float(), b.float()).mean()

    def draw_steps(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n diffusion steps for a denoiser batch, uniform or by cfg.t_weights."""
        if self.cfg.t_weights is None:
            return torch.randint(self.schedule.T, (n,), generator=gen)
        return torch.multinomial(torch.tensor(self.cfg.t_weights, dtype=torch.float64), n, replacement=True,
                                 generator=gen)

    def loss(self, step: int, batch: Optional[tuple] = None) -> tuple[torch.Tensor, dict]:
        """The loss of `step` on its batch (`batch`: that batch when the caller already has it)."""
        lr01, hr01, _ = batch if batch is not None else self.batch(step)
        lr = (lr01 * 2 - 1).to(self.device, non_blocking=True)
        x0 = (hr01 * 2 - 1).to(self.device, non_blocking=True)
        wts = self.cfg.loss
        if self.cfg.kind == "g":
            _, out = make_condition(self.model, lr, x0.shape[-2:])
            terms = {"l1": F.l1_loss(out, x0), "mse": F.mse_loss(out, x0)}
            if wts.get("lpips", 0) > 0:
                terms["lpips"] = self._lpips(out, x0)
        else:
            gen = torch.Generator().manual_seed(derive_seed(self.cfg.train_seed, "diffusion", step))
            with torch.no_grad():
                y0, g = make_condition(self.aux, lr, x0.shape[-2:])
            n = x0.shape[0]
            t = self.draw_steps(n, gen)
            eps = torch.randn(x0.shape, generator=gen).to(self.device)
            w = noise_weight(g, y0, self.unw)
            anchor = x0
            if self.cfg.start_prob > 0:  # these samples start where the sampler starts: around g
                at_start = (torch.rand((n,), generator=gen) < self.cfg.start_prob).to(self.device)
                anchor = torch.where(at_start.view(-1, 1, 1, 1), g, x0)
            x_t = self.schedule.q_sample(anchor, y0, t, eps, w)
            x_in = x_t / self.schedule.input_scale_tensor(t, x_t)
            out = self.model(x_in, t.to(self.device), g, y0)
            terms = {"mse": F.mse_loss(out, x0), "l1": F.l1_loss(out, x0)}
            if wts.get("lpips", 0) > 0:
                terms["lpips"] = self._lpips(out, x0)
        total = sum(wts.get(k, 0) * v for k, v in terms.items() if wts.get(k, 0))
        return total, {k: v.detach() for k, v in terms.items()}

    # -- loop --------------------------------------------------------------------------------------
    def _log(self, rec: dict):
        rec = {"time": round(time.time(), 3), **rec}
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.log_stdout:
            print(json.dumps(rec), flush=True)

    def train(self, until: Optional[int] = None, time_budget: Optional[float] = None) -> list[float]:
        """Train to cfg.steps (or `until`); returns the losses of the steps run now.

        time_budget (seconds): the run's length is set from the measured speed at the end of the warm-up,
        whose learning rates do not depend on it, so that it ends after about that long counted from now
        (validation included); cfg.steps takes the value, which is logged and exported, and a run with
        `steps` set to it is this run exactly."""
        if time_budget is not None and (self.step >= self.cfg.warmup or until is not None):
            raise ValueError(f"a time budget sets the step count at the end of the warm-up (step {self.cfg.warmup}), "
                             f"for a run from step {self.step} to its end: resume a run past it with the count it logged")

        def end() -> int:  # the last step of this call; unbounded while a time budget has still to set cfg.steps
            if time_budget is not None:
                return 1 << 62
            return self.cfg.steps if until is None else min(self.cfg.steps, until)

        use_amp = self.cfg.amp and self.device.type == "cuda"
        losses = []
        t0 = time.time()
        timed_at = self.step + min(3, max(0, self.cfg.warmup - self.step - 1))  # the first steps pick kernels
        timed_from = (timed_at, t0)
        self.model.train()
        batches = self._batches_from(self.step, end())
        while True:
            if self.step == timed_at:
                timed_from = (self.step, time.time())
            if time_budget is not None and self.step == self.cfg.warmup:
                self._set_steps_from_budget(time_budget, t0, timed_from)
                time_budget = None
            if self.step >= end():
                break
            for grp in self.opt.param_groups:
                grp["lr"] = lr_at(self.cfg, self.step)
            batch = next(batches)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                total, terms = self.loss(self.step, batch)
            self.opt.zero_grad(set_to_none=True)
            total.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.opt.step()
            self.ema.update(self.model, self.step)
            self.step += 1
            losses.append(total.detach())  # read back at log steps only: a read per step stalls the GPU queue
            if self.step % self.cfg.log_every == 0 or self.step == end():
                self._log({"step": self.step, "loss": float(losses[-1]), **{k: float(v) for k, v in terms.items()},
                           "grad_norm": float(gnorm), "lr": lr_at(self.cfg, self.step - 1),
                           "s_per_step": (time.time() - t0) / len(losses)})
            if self.step % self.cfg.ckpt_every == 0 or self.step == end():
                save_state(self.out / "state", self.step, self.model, self.ema.model, self.opt, self.cfg.to_dict())
                self.export(self.out / "model.safetensors")
            if self.cfg.val_every and (self.step % self.cfg.val_every == 0 or self.step == end()):
                self._log({"step": self.step, "event": "val", **self.validate()})
        return [float(x) for x in losses]

    def _set_steps_from_budget(self, budget: float, t0: float, timed_from: tuple[int, float]) -> None:
        """cfg.steps such that the run ends about `budget` s after t0: the remaining time at the speed since
        `timed_from`, less a tenth for checkpoints and validation (at least one step past the warm-up)."""
        k0, s0 = timed_from
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the queued steps are part of the time
        now = time.time()
        s_per_step = (now - s0) / max(1, self.step - k0)
        left = budget - (now - t0)
        self.cfg.steps = self.step + max(1, int(0.9 * left / s_per_step))
        self._log({"event": "time_budget", "step": self.step, "budget_s": budget, "s_per_step": s_per_step,
                   "steps": self.cfg.steps})

    # -- outputs -----------------------------------------------------------------------------------
    def spec(self) -> ModelSpec:
        info = {"trained_steps": self.step, "config": self.cfg.to_dict()}
        if self.cfg.kind == "g":
            return ModelSpec(aux=self.aux_cfg.to_dict(), denoiser=None, scale=self.aux_cfg.scale,
                             train_scales=self.cfg.scales, info=info)
        return ModelSpec(aux=self.aux_cfg.to_dict(), denoiser=self.den_cfg, schedule=self.schedule.cfg.to_dict(),
                         unw=self.unw.to_dict(), scale=self.aux_cfg.scale, train_scales=self.cfg.scales, info=info)

    def export(self, path: Path) -> Path:
        """Checkpoint of the EMA weights usable by the inference pipeline."""
        if self.cfg.kind == "g":
            return save_checkpoint(path, self.spec(), None, self.ema.model)
        return save_checkpoint(path, self.spec(), self.ema.model, self.aux)

    @torch.no_grad()
    def validate(self) -> dict:
        """PSNR-Y (border 4) and LPIPS of the EMA model on centre crops of held-out images, degraded the same
        way as training at each of cfg.val_scales (averaged over crops and scales; per-scale PSNR-Y too)."""
        from upsr_video.eval.fidelity import psnr_y

        from .data import load_image
        from .degradations import degrade

        model = self.ema.model
        files = self.val_files[: self.cfg.val_images]
        ps, lp, ps_bic, per_scale = [], [], [], {}
        gen = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "val"))
        pipe = None if self.cfg.kind == "g" else UPSRPipeline(model, self.aux, self.schedule.cfg, self.unw, self.device)
        to8 = lambda z: ((z[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        for scale in self.cfg.val_scales:
            for f in files:
                hr = load_image(f)  # [3,H,W] in [0,1]
                c = self.cfg.val_crop
                h, w = hr.shape[-2:]
                top, left = max(0, (h - c) // 2), max(0, (w - c) // 2)
                hr = hr[:, top : top + c, left : left + c][None]
                lr = degrade(hr, float(scale), self.val_deg_cfg, gen).to(self.device) * 2 - 1
                x0 = hr.to(self.device) * 2 - 1
                if self.cfg.kind == "g":
                    out = make_condition(model, lr, x0.shape[-2:])[1].clamp(-1, 1)
                else:
                    y0, g = pipe.condition(lr, x0.shape[-2:])
                    eps = torch.randn(x0.shape, generator=gen).to(self.device)
                    out = pipe.sample(y0, g, eps, start_step=self.cfg.val_start_step)
                bic = F.interpolate(lr, size=x0.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1)
                p = psnr_y(to8(out), to8(x0), 4)
                ps.append(p)
                per_scale.setdefault(scale, []).append(p - psnr_y(to8(bic), to8(x0), 4))
                ps_bic.append(psnr_y(to8(bic), to8(x0), 4))
                if self.lpips is not None:
                    lp.append(float(self.lpips(out, x0).mean()))
        res = {"val_psnr_y": float(np.mean(ps)), "val_psnr_y_bicubic": float(np.mean(ps_bic))}
        res.update({f"val_gain_x{k:g}": float(np.mean(v)) for k, v in per_scale.items()})
        if lp:
            res["val_lpips"] = float(np.mean(lp))
        return res
