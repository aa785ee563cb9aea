"""`upsr-video compare` and `upsr-video eval` on real Vid4 frames: the table, CSV, plots and preview exist and parse,
and the figures agree with an independent computation."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from upsr_video.cli import main
from upsr_video.eval.fidelity import psnr_y
from upsr_video.eval.sr_bench import bicubic_downscale

SHARED = Path(__file__).resolve().parents[2] / "shared"
CALENDAR = SHARED / "data" / "vid4" / "GT" / "calendar"
LPIPS = SHARED / "weights" / "lpips_alex_v0.1.safetensors"


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gt_dir(tmp_path_factory):
    """The first 5 calendar GT frames, cropped to 240x160 (a region with text and motion) to keep the run short."""
    d = tmp_path_factory.mktemp("gt")
    for i, p in enumerate(sorted(CALENDAR.iterdir())[:5]):
        img = cv2.imread(str(p))
        cv2.imwrite(str(d / f"{i:03d}.png"), img[200:360, 240:480])
    return d


def test_compare_writes_table_plots_and_preview(tmp_path, gt_dir):
    out = tmp_path / "report"
    r = CliRunner().invoke(main, ["compare", str(gt_dir), "--make-lr", "4", "--methods", "bicubic,lanczos,g",
                                  "--lpips-weights", str(LPIPS), "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = _last_json(r.stdout)
    rows = {row["method"]: row for row in res["rows"]}
    assert set(rows) == {"bicubic", "lanczos", "g"}
    # bicubic's PSNR-Y recomputed independently from the same LR (the tool's down-scaler) and OpenCV's bicubic
    gts = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(gt_dir.iterdir())]
    ours = [psnr_y(cv2.resize(bicubic_downscale(g, 4), (240, 160), interpolation=cv2.INTER_CUBIC), g, 4) for g in gts]
    assert abs(rows["bicubic"]["psnr_y"] - np.mean(ours)) < 0.05
    assert rows["g"]["psnr_y"] > rows["bicubic"]["psnr_y"]  # the bundled g beats bicubic on real frames
    for m in ("lpips", "e_warp", "tof", "tlpips", "flicker", "ssim_y"):
        assert all(np.isfinite(row[m]) and row[m] >= 0 for row in rows.values())
    table = json.loads((out / "table.json").read_text())
    with open(out / "table.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 3 and {c["method"] for c in csv_rows} == set(rows)
    assert table  # parses
    for name in ("per_frame_psnr_y.png", "per_frame_e_warp.png", "bars.png", "grid.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] > 50 and img.shape[1] > 50
    with av.open(str(out / "side_by_side.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5


def test_eval_of_an_output_against_gt(tmp_path, gt_dir):
    """eval scores a given output video: GT itself gives infinite-like PSNR and zero tOF; a blurred copy is worse."""
    blurred = tmp_path / "blur"
    blurred.mkdir()
    for p in sorted(gt_dir.iterdir()):
        cv2.imwrite(str(blurred / p.name), cv2.GaussianBlur(cv2.imread(str(p)), (5, 5), 1.5))
    runner = CliRunner()
    r_gt = runner.invoke(main, ["eval", str(gt_dir), "--gt", str(gt_dir), "--lpips-weights", str(LPIPS)])
    r_bl = runner.invoke(main, ["eval", str(blurred), "--gt", str(gt_dir), "--lpips-weights", str(LPIPS),
                                "--out", str(tmp_path / "rep")])
    assert r_gt.exit_code == 0 and r_bl.exit_code == 0, (r_gt.output, r_bl.output)
    a, b = _last_json(r_gt.stdout), _last_json(r_bl.stdout)
    assert a["frames"] == b["frames"] == 5
    assert a["psnr_y"] > 60 and a["lpips"] < 1e-3 and a["tof"] < 1e-6
    assert b["psnr_y"] < 40 and b["lpips"] > 0.01
    assert (tmp_path / "rep" / "table.csv").exists() and (tmp_path / "rep" / "per_frame_psnr_y.png").exists()


def test_eval_needs_a_reference(tmp_path, gt_dir):
    r = CliRunner().invoke(main, ["eval", str(gt_dir)])
    assert r.exit_code == 2 and "give --gt or --input" in r.output


def test_compare_runs_the_path_upscale_ships(tmp_path, gt_dir, monkeypatch):
    """compare's frames for the default mode are upscale's frames: the same LR through `upsr-video upscale`
    (lossless RGB in and out) gives identical pixels, at the start step make_plan chooses (resolve_start, one
    function for both)."""
    import upsr_video.eval.compare as cmp
    from upsr_video.upscale import upscale_video
    from upsr_video.process import UpscaleOptions

    import videogen

    seen = {}
    real = cmp.write_report

    def keep(out_dir, rows, curves, outputs, gt, lr, *a, **k):
        seen["outputs"], seen["lr"] = outputs, lr
        return real(out_dir, rows, curves, outputs, gt, lr, *a, **k)

    monkeypatch.setattr(cmp, "write_report", keep)
    method = f"upsr-{UpscaleOptions().temporal}"
    r = CliRunner().invoke(main, ["compare", str(gt_dir), "--make-lr", "4", "--methods", f"bicubic,{method}",
                                  "--max-frames", "3", "--lpips-weights", str(LPIPS), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    res = _last_json(r.stdout)
    src = videogen.write_video(tmp_path / "lr.mkv", seen["lr"], codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "up.mkv"
    summary = upscale_video(str(src), str(out), UpscaleOptions(target=None, scale=4.0, codec="ffv1", pix_fmt="bgr0",
                                                                threads=2))
    assert summary["model"] == "UPSR" and summary["start_step"] == res["start_step"]
    with av.open(str(out)) as c:
        up = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(up) == len(seen["outputs"][method]) == 3
    for a, b in zip(up, seen["outputs"][method]):
        assert np.array_equal(a, b)


def test_compare_steps_option(tmp_path, gt_dir):
    """--steps reaches compare's UPSR methods (start step in the JSON); a bad value is one line, exit 2."""
    r = CliRunner().invoke(main, ["compare", str(gt_dir), "--make-lr", "4", "--methods", "upsr-shared", "--steps",
                                  "5", "--max-frames", "2", "--lpips-weights", str(LPIPS), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert _last_json(r.stdout)["start_step"] is None
    bad = CliRunner().invoke(main, ["compare", str(gt_dir), "--make-lr", "4", "--methods", "upsr-shared", "--steps",
                                    "0", "--out", str(tmp_path / "rep2")])
    assert bad.exit_code == 2 and "--steps must be auto or a number of denoiser calls in 1..5, got 0" in bad.output
