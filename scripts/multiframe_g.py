"""Probe: does g gain from the neighbouring frames? (issue 11's Vid4 bar asks +2.0 dB over bicubic; single-image
SR networks of any size stay well below that on Vid4, multi-frame ones do not.)

Two arms fine-tuned from the x4 CompactSR g (checkpoints/g-compact-s-pool.safetensors, on the LR grid), same data,
same steps, same seed:
- `single`: the network as it is, on the centre frames;
- `multi`: the same network whose first convolution also takes, for each of the two previous LR frames, its sample
  nearest to where each current pixel was and that sample's sub-pixel offset, by the model's own LR flow and
  reliability masks (`upsr_video.motion.lr_motion`, as the recurrent anchor uses them). The new input weights start
  at zero, so at step 0 it is exactly g.

Training clips are 3-frame pans over training-pool images (never the held-out ones): integer HR steps of up to
+-10 px per frame (+-2.5 LR px at x4, so the LR frames move by sub-pixel amounts) with +-2 px jitter (a tenth of the
clips still), LR by antialiased bicubic or the BD blur (Gaussian sigma 1.6, sampled at pixel centres), half each.
Held-out scoring:
the held-out images made into 10-frame clips of known motion (`scripts/temporal_modes.py --data holdout`), both
degradations, PSNR-Y of frames 2..9 (each has two predecessors), 4 px shaved.

    python scripts/multiframe_g.py train --arm multi --minutes 60   # resumes from runs/mfg-multi/state.pt
    python scripts/multiframe_g.py eval                              # held-out table; --vid4 adds Vid4 (report only)
    python scripts/multiframe_g.py oracle                            # how much two predecessors can add at all

`oracle` bounds the question without learning: each held-out clip's background pan (no sprite) with its exact
motion, the LR samples of frames i, i-1, i-2 placed at their true HR positions and interpolated by normalised
Gaussian convolution, against the same reconstruction from frame i alone (PSNR-Y, 8 px shaved).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from upsr_video.checkpoint import load_checkpoint  # noqa: E402
from upsr_video.eval.fidelity import psnr_y  # noqa: E402
from upsr_video import motion as mo  # noqa: E402
from upsr_video.eval.flow import warp as np_warp  # noqa: E402
from upsr_video.eval.sr_bench import bicubic_downscale, to_tensor, to_uint8  # noqa: E402
from quality_bars import bd_x4  # noqa: E402  (the Vid4 bars' BD degradation)

SHARED = ROOT.parent / "shared"
SCALE = 4
PATCH = 192  # HR
BATCH = 8
IN_CH = 13
STILL = 0.1  # share of clips without motion: a still shot's neighbours carry nothing new, g must hold


def _onto(prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bw flow on cur's grid into prev, reliable mask) as the recurrent anchor uses them (motion.lr_motion)."""
    _, bw, _, dis, photo = mo.lr_motion(prev, cur)
    return bw, ~dis & photo


def _take(img: np.ndarray, pos: np.ndarray, ok: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """HxWx5: img's pixel nearest to each position (raw samples, not interpolated: aliasing is the information a
    neighbour adds, and interpolating filters it) and the position's offset from that pixel in LR px (the phase the
    network needs to place the sample); the current frame with offset 0 where `ok` is False."""
    h, w = img.shape[:2]
    near = np.rint(pos)
    xi = np.clip(near[..., 0], 0, w - 1).astype(np.intp)
    yi = np.clip(near[..., 1], 0, h - 1).astype(np.intp)
    out = np.zeros((h, w, 5), np.float32)
    out[..., :3] = img[yi, xi]
    out[..., 3:] = pos - near
    out[~ok] = np.concatenate([cur[~ok].astype(np.float32), np.zeros((int((~ok).sum()), 2), np.float32)], axis=1)
    return out


def stack(lrs: list[np.ndarray], i: int) -> np.ndarray:
    """HxWx13 float32: frame i (RGB 0..255), then for i-1 and i-2 their samples nearest to where each pixel of i
    was (RGB) and the sub-pixel offset (x, y). Causal: a frame never waits for the next one. i-2 comes over the
    composed flow (i -> i-1 -> i-2, so each pair's flow is computed once in a video); where a flow is unreliable
    the current frame takes its place with offset 0 (so at a shot's start the input is the frame itself)."""
    c = lrs[i]
    h, w = c.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)
    none = np.zeros((h, w), bool)
    if i < 1:
        s = _take(c, grid, none, c)
        return np.concatenate([c.astype(np.float32), s, s], axis=2)
    bw1, rel1 = _onto(lrs[i - 1], c)
    s1 = _take(lrs[i - 1], grid + bw1, rel1, c)
    if i < 2:
        return np.concatenate([c.astype(np.float32), s1, s1], axis=2)
    bw2, rel2 = _onto(lrs[i - 2], lrs[i - 1])
    bw = bw1 + np_warp(bw2, bw1)
    rel = rel1 & (np_warp(rel2.astype(np.float32), bw1) > 0.5)
    s2 = _take(lrs[i - 2], grid + bw, rel, c)
    return np.concatenate([c.astype(np.float32), s1, s2], axis=2)


def to_input(stacks: list[np.ndarray]) -> torch.Tensor:
    """[N,13,h,w]: RGB channels to [-1, 1], offsets as they are."""
    x = torch.from_numpy(np.stack(stacks)).permute(0, 3, 1, 2).float()
    rgb = [0, 1, 2, 3, 4, 5, 8, 9, 10]
    x[:, rgb] = x[:, rgb] / 127.5 - 1
    return x


class MultiFrameSR(nn.Module):
    """A CompactSR whose first convolution takes the current frame and its two predecessors' samples with their
    offsets (13 channels, `stack`); the bicubic skip is the current frame's. Built from a trained CompactSR, with
    zero weights on the new inputs."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.scale = base.scale
        self.body = copy.deepcopy(base.body)
        c0 = self.body[0]
        conv = nn.Conv2d(IN_CH, c0.out_channels, 3, 1, 1)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[:, :3] = c0.weight
            conv.bias.copy_(c0.bias)
        self.body[0] = conv
        self.upsample = nn.PixelShuffle(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x[:, :3], scale_factor=self.scale, mode="bicubic", align_corners=False)
        return base + self.upsample(self.body(x))


def base_g() -> nn.Module:
    """The x4 CompactSR g (the default's x4 band until RLFN replaced it on 2026-12-08)."""
    _, _, aux = load_checkpoint(ROOT / "checkpoints/g-compact-s-pool.safetensors")
    return aux.eval()


def pool_images() -> list[np.ndarray]:
    from training.data import holdout_split, read_image_u8

    train, _ = holdout_split([SHARED / "data/images/train_hr"], 20)
    return [read_image_u8(p) for p in train]


def sample(ims: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training clip: (LR stack HxWx13 float32, `stack`; HR frame PATCHxPATCHx3 uint8)."""
    im = ims[rng.integers(len(ims))]
    if rng.random() < STILL:
        offs = [np.zeros(2, int)] * 3
    else:
        v = rng.integers(-10, 11, size=2)
        offs = [2 * v + rng.integers(-2, 3, size=2), v + rng.integers(-2, 3, size=2), np.zeros(2, int)]
    m = 24
    h, w = im.shape[:2]
    y = rng.integers(m, h - PATCH - m + 1)
    x = rng.integers(m, w - PATCH - m + 1)
    hrs = [im[y + o[1] : y + o[1] + PATCH, x + o[0] : x + o[0] + PATCH] for o in offs]
    k = rng.integers(8)
    hrs = [np.ascontiguousarray(np.rot90(f[:, ::-1] if k & 4 else f, k & 3)) for f in hrs]
    down = bd_x4 if rng.random() < 0.5 else (lambda f: bicubic_downscale(f, SCALE))
    lrs = [down(f) for f in hrs]
    return stack(lrs, 2), hrs[2]


def batch(ims, step: int, seed: int = 0):
    rng = np.random.default_rng([seed, step])
    xs, ys = zip(*(sample(ims, rng) for _ in range(BATCH)))
    x = to_input(list(xs))
    y = torch.from_numpy(np.stack(ys)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, y


def train(arm: str, minutes: float, out: Path, lr: float = 2e-4, total: int = 8000) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    g = base_g()
    net = MultiFrameSR(g) if arm == "multi" else copy.deepcopy(g)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total, eta_min=lr * 0.05)
    out.mkdir(parents=True, exist_ok=True)
    state, step = out / "state.pt", 0
    if state.exists():
        s = torch.load(state, weights_only=True)
        net.load_state_dict(s["net"]), opt.load_state_dict(s["opt"]), sched.load_state_dict(s["sched"])
        step = int(s["step"])
    ims = pool_images()
    t_end = time.time() + minutes * 60
    log = open(out / "log.jsonl", "a")
    run = 0.0
    while step < total and time.time() < t_end:
        x, y = batch(ims, step)
        inp = x if arm == "multi" else x[:, :3]
        loss = F.l1_loss(net(inp), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        run = 0.98 * run + 0.02 * float(loss) if step > 1 else float(loss)
        if step % 50 == 0:
            log.write(json.dumps({"step": step, "l1": run, "t": time.time()}) + "\n")
            log.flush()
        if step % 250 == 0 or step == total or time.time() >= t_end:
            tmp = out / "state.tmp"
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step},
                       tmp)
            tmp.replace(state)


def load_arm(arm: str, out: Path) -> nn.Module:
    g = base_g()
    net = MultiFrameSR(g) if arm == "multi" else copy.deepcopy(g)
    if (out / "state.pt").exists():
        net.load_state_dict(torch.load(out / "state.pt", weights_only=True)["net"])
    return net.eval()


def run_clip(nets: dict, lrs: list[np.ndarray], gts: list[np.ndarray], still: bool = False) -> dict:
    """PSNR-Y per net over frames 2.. (each has two predecessors; `still`: each frame as if a shot began there)."""
    scores = {k: [] for k in nets}
    scores["bicubic"] = []
    for i in range(2, len(lrs)):
        x = to_input([stack(lrs[i : i + 1], 0) if still else stack(lrs, i)])
        h, w = gts[i].shape[:2]
        with torch.no_grad():
            for k, net in nets.items():
                o = net(x if isinstance(net, MultiFrameSR) else x[:, :3])[..., :h, :w]
                scores[k].append(psnr_y(to_uint8(o), gts[i], shave=SCALE))
            b = F.interpolate(to_tensor(lrs[i]), size=(h, w), mode="bicubic", align_corners=False)
            scores["bicubic"].append(psnr_y(to_uint8(b), gts[i], shave=SCALE))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def evaluate(runs: Path, vid4: bool) -> dict:
    from temporal_modes import holdout_motions
    from upsr_video.eval.motion_clips import moving_clip

    nets = {"g": base_g(), "single": load_arm("single", runs / "mfg-single"),
            "multi": load_arm("multi", runs / "mfg-multi")}
    res = {}
    for deg, down in (("BD", bd_x4), ("bicubic", lambda f: bicubic_downscale(f, SCALE))):
        for still in (False, True):
            per = []
            for name, im, other, spec in holdout_motions():
                gt = moving_clip(im, other, spec, 10)
                gt = [f[: f.shape[0] // 4 * 4, : f.shape[1] // 4 * 4] for f in gt]
                per.append(run_clip(nets, [down(f) for f in gt], gt, still))
            name = f"holdout {deg} x4{' stills' if still else ''}"
            res[name] = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    if vid4:
        from quality_bars import vid4_clips

        clips = vid4_clips(lambda gt: [bd_x4(f) for f in gt])
        per = [run_clip(nets, lr, gt) for lr, gt in clips.values()]
        res["Vid4 BDx4 (report only)"] = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    return res


def scatter(lrs: list[np.ndarray], shifts: list[tuple[int, int]], size: tuple[int, int], sigma: float) -> np.ndarray:
    """Normalised-convolution reconstruction at `size` from LR frames whose content is displaced by `shifts` (HR px)
    from the reference: LR pixel (a, b) of a frame samples HR position (4b + 1.5 + dx, 4a + 1.5 + dy)."""
    h, w = size
    num, den = np.zeros((h, w, 3)), np.zeros((h, w))
    for lr, (dx, dy) in zip(lrs, shifts):
        ys = np.rint(np.arange(lr.shape[0]) * SCALE + 1.5 + dy).astype(int)
        xs = np.rint(np.arange(lr.shape[1]) * SCALE + 1.5 + dx).astype(int)
        oy, ox = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
        num[np.ix_(ys[oy], xs[ox])] += lr[np.ix_(oy, ox)]
        den[np.ix_(ys[oy], xs[ox])] += 1
    k = int(6 * sigma) | 1
    num, den = cv2.GaussianBlur(num, (k, k), sigma), cv2.GaussianBlur(den, (k, k), sigma)
    return np.clip(num / np.maximum(den, 1e-6)[..., None], 0, 255).round().astype(np.uint8)


def oracle(sigma: float = 1.5) -> dict:
    from temporal_modes import holdout_motions
    from upsr_video.eval.motion_clips import MotionSpec, moving_clip

    res = {}
    for deg, down in (("BD", bd_x4), ("bicubic", lambda f: bicubic_downscale(f, SCALE))):
        one, three = [], []
        for _, im, other, spec in holdout_motions():
            gt = moving_clip(im, other, MotionSpec(spec.camera, (0, 0), spec.size, (1, 1)), 10)  # a 1-px sprite: none
            cx, cy = spec.camera
            for i in range(2, len(gt)):
                lrs = [down(gt[i - k]) for k in range(3)]
                shifts = [(-k * cx, -k * cy) for k in range(3)]  # frame i-k shows frame i's content k steps back
                size = gt[i].shape[:2]
                one.append(psnr_y(scatter(lrs[:1], shifts[:1], size, sigma), gt[i], 8))
                three.append(psnr_y(scatter(lrs, shifts, size, sigma), gt[i], 8))
        res[f"holdout {deg} x4, sigma {sigma}"] = {"frame alone": float(np.mean(one)),
                                                   "with two predecessors": float(np.mean(three))}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--arm", choices=("single", "multi"), required=True)
    t.add_argument("--minutes", type=float, default=60)
    t.add_argument("--runs", default="runs")
    e = sub.add_parser("eval")
    e.add_argument("--runs", default="runs")
    e.add_argument("--vid4", action="store_true")
    e.add_argument("--json")
    o = sub.add_parser("oracle")
    o.add_argument("--sigma", type=float, default=1.5)
    a = ap.parse_args(argv)
    if a.cmd == "train":
        train(a.arm, a.minutes, Path(a.runs) / f"mfg-{a.arm}")
        return 0
    torch.set_num_threads(2)
    res = oracle(a.sigma) if a.cmd == "oracle" else evaluate(Path(a.runs), a.vid4)
    for k, v in res.items():
        print(k, " ".join(f"{m} {x:.3f}" for m, x in v.items()))
    if getattr(a, "json", None):
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
