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


def test_refuses_eval_sets_as_training_data(tmp_path):
    with pytest.raises(ValueError, match="evaluation set"):
        Trainer(_cfg(tmp_path / "bad", data={"sources": [str(SHARED / "data/images/Set14")]}), log_stdout=False)
