"""Which g serves better per second: a checkpoint's g, the bundled default's g (CompactSR, bicubic x4, LR grid)
and RLFN (off the shelf, bicubic x4, LR grid).

    python benchmarks/g_choice.py --checkpoint checkpoints/upsr-small-video.safetensors --threads 2 --repeats 1

Quality of g alone (PSNR-Y, ceil(scale) px shaved) on Vid4 BDx4 (4 clips x 10 frames; blur 1.6 + x4 at pixel
centres), on the web-like x2 H.264 CRF 26 clips and on Set14 x4 (the set's LR); seconds per frame of g alone
(median of --repeats) for 480x270 -> 1920x1080 and 1280x720 -> 1920x1080, on this CPU, with the ratio of the
two. RLFN's output is resized to the target like any LR-grid g (models/aux.py).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from quality_bars import SHARED, bd_x4, vid4_clips, web_lr  # noqa: E402

from upsr_video.checkpoint import default_checkpoint_path, load_checkpoint  # noqa: E402
from upsr_video.eval.fidelity import psnr_y  # noqa: E402
from upsr_video.eval.sr_bench import load_pairs, to_tensor, to_uint8  # noqa: E402
from upsr_video.models.aux import build_aux  # noqa: E402
from upsr_video.pipeline import make_condition  # noqa: E402


def g_out(aux, lr: np.ndarray, size) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(make_condition(aux, to_tensor(lr), size)[1].clamp(-1, 1))


def seconds(aux, lr_hw, out_hw, repeats: int) -> float:
    lr = torch.rand(1, 3, *lr_hw) * 2 - 1
    ts = []
    with torch.no_grad():
        make_condition(aux, lr, out_hw)
        for _ in range(repeats):
            t0 = time.perf_counter()
            make_condition(aux, lr, out_hw)
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(default_checkpoint_path()))
    ap.add_argument("--rlfn", default=str(SHARED / "weights/rlfn_ntire2022_x4.safetensors"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rlfn = build_aux("rlfn")
    rlfn.load_state_dict(load_file(a.rlfn), strict=True)
    gs = {"g of --checkpoint": load_checkpoint(a.checkpoint)[2].eval(),
          "g of the bundled default": load_checkpoint(default_checkpoint_path())[2].eval(),
          "RLFN x4 (bicubic-trained)": rlfn.eval()}
    bd = vid4_clips(lambda gt: [bd_x4(f) for f in gt])
    web = vid4_clips(web_lr)
    set14 = load_pairs(SHARED / "data/images/Set14", 4)
    print(f"{'g':28s} {'params':>8s} {'Vid4 BDx4':>10s} {'web x2':>8s} {'Set14 x4':>9s} {'270p->1080p s':>14s} {'720p->1080p s':>14s} {'ratio':>6s}")
    for name, aux in gs.items():
        vb = np.mean([psnr_y(g_out(aux, l, g.shape[:2]), g, 4) for lr, gt in bd.values() for l, g in zip(lr, gt)])
        vw = np.mean([psnr_y(g_out(aux, l, g.shape[:2]), g, 2) for lr, gt in web.values() for l, g in zip(lr, gt)])
        s14 = np.mean([psnr_y(g_out(aux, p.lr, p.hr.shape[:2]), p.hr, 4) for p in set14])
        s_small = seconds(aux, (270, 480), (1080, 1920), a.repeats)
        s_big = seconds(aux, (720, 1280), (1080, 1920), a.repeats)
        params = sum(p.numel() for p in aux.parameters())
        print(f"{name:28s} {params:8d} {vb:10.3f} {vw:8.3f} {s14:9.3f} {s_small:14.3f} {s_big:14.3f} {s_big / s_small:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
