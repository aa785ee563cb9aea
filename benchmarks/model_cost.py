"""Model cost: parameters, FLOPs per denoiser step and per frame, and measured CPU time per frame.

    python benchmarks/model_cost.py [--sizes 480x270,...] [--repeats 3] [--threads 2] [--json out.json]

For every denoiser preset (and every g preset) it prints the parameter count, then for every LR size WxH
(default 480x270, i.e. 270p -> 1080p at x4):

* FLOPs (= 2 x multiply-accumulates) per denoiser step, counted with `torch.utils.flop_counter.FlopCounterMode`
  on the *meta* device at the full HR size padded to the denoiser's spatial multiple, exactly as
  `UPSRPipeline.sample` pads (so no scaling is involved). Counted: convolutions, linear layers and the window
  attention matmuls; not counted: normalisation, activations, interpolation and other element-wise work
  (a few percent). Because Swin windows have a fixed size, the cost is linear in the pixel count.
* FLOPs per frame = steps x step + one g pass at LR (g = --aux, default compact-s, also for upsr-large whose
  official g, ATD, is not part of this package).
* The extra cost of the tiles the CLI would use (`process.auto_tiles`): tiles overlap, so a tiled frame costs
  n_tiles x tile cost instead of the whole padded frame.

Then it times the real `UPSRPipeline` (randomly initialised --time-preset denoiser + --aux g, CLI tiling, all
T steps from the prior, fp32) on a random LR frame of each size: the median wall-clock seconds per frame over
--repeats runs after one untimed warm-up, next to g alone (the aux network as the pipeline runs it, with its
LR tiling) and plain bicubic up-sampling as the baseline. Timings depend on the machine and on other load: the 1-minute
load average is printed before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from upsr_video.diffusion.schedule import ScheduleConfig  # noqa: E402
from upsr_video.models.aux import AUX_PRESETS, build_aux  # noqa: E402
from upsr_video.models.unet import DENOISER_PRESETS, build_denoiser, count_parameters  # noqa: E402
from upsr_video.pipeline import TileOptions, UPSRPipeline  # noqa: E402
from upsr_video.tiling import tile_starts  # noqa: E402

SCALE = 4


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'480x270,320x180' -> [(480, 270), (320, 180)] as (W, H) of the LR input."""
    out = []
    for part in text.split(","):
        w, h = part.lower().strip().split("x")
        out.append((int(w), int(h)))
    return out


def round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def count_flops(fn, *shapes) -> int:
    """FLOPs of fn(*meta tensors of the given shapes)."""
    args = [torch.zeros(s, device="meta") for s in shapes]
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        fn(*args)
    return int(fc.get_total_flops())


def denoiser_step_flops(name: str, hr_h: int, hr_w: int) -> int:
    with torch.device("meta"):
        model = build_denoiser(name).eval()
    t = torch.zeros(1, dtype=torch.long, device="meta")
    return count_flops(lambda x, g, y0: model(x, t, g, y0), *[(1, 3, hr_h, hr_w)] * 3)


def aux_flops(name: str, lr_h: int, lr_w: int) -> int:
    with torch.device("meta"):
        aux = build_aux(name).eval()
    return count_flops(aux, (1, 3, lr_h, lr_w))


def cli_tiles(pipe: UPSRPipeline, hr_size: tuple[int, int], lr_size: tuple[int, int]) -> TileOptions:
    """The tiling `upsr-video upscale` chooses for this model size (no --tile); sizes (H, W)."""
    try:
        from upsr_video.process import UpscaleOptions, auto_tiles
    except ImportError:  # the video layer is optional for this benchmark
        return TileOptions(tile=None, aux_tile=512)
    return auto_tiles(pipe, UpscaleOptions(), hr_size, lr_size)


def tile_layout(multiple: int, tiles: TileOptions, padded: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """(number of denoiser tiles, tile (H, W)) as UPSRPipeline.sample + tiled_apply lay them out."""
    h, w = padded
    if tiles.tile is None:
        return 1, (h, w)
    tile = max(multiple, round_up(tiles.tile, multiple))
    th, tw = min(tile, h), min(tile, w)
    ys = tile_starts(h, th, tiles.overlap, multiple)
    xs = tile_starts(w, tw, tiles.overlap, multiple)
    if len(ys) == 1 and len(xs) == 1:
        return 1, (h, w)
    return len(ys) * len(xs), (th, tw)


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up: allocator, mask caches, first-call dispatch
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def fmt_g(flops: float) -> str:
    return f"{flops / 1e9:,.1f}"


def table(headers: list[str], rows: list[list], title: str) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [title, line, "-" * len(line)]
    for r in cells:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="480x270", help="LR sizes WxH, comma separated (default 480x270 -> 1080p)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads for the timings")
    ap.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    ap.add_argument("--presets", default=",".join(DENOISER_PRESETS), help="denoiser presets for the FLOP table")
    ap.add_argument("--aux", default="compact-s", help="g preset paired with every denoiser (default compact-s)")
    ap.add_argument("--time-preset", default="upsr-small", help="denoiser preset that is timed")
    ap.add_argument("--no-time", action="store_true", help="only parameters and FLOPs")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        ap.error("--repeats and --threads must be >= 1")

    torch.set_num_threads(args.threads)
    sizes = parse_sizes(args.sizes)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    steps = ScheduleConfig().steps
    result: dict = {
        "machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                    "platform": platform.platform(), "loadavg_start": os.getloadavg()[0]},
        "steps": steps, "aux": args.aux, "parameters": {}, "flops": [], "timing": [],
    }

    # -- parameters -------------------------------------------------------------------------------
    rows = []
    for name in presets:
        with torch.device("meta"):
            model = build_denoiser(name)
        n = count_parameters(model)
        result["parameters"][name] = {"kind": "denoiser", "params": n, "spatial_multiple": model.spatial_multiple}
        rows.append([name, "denoiser", f"{n:,}", model.spatial_multiple])
    for name in AUX_PRESETS:
        n = sum(p.numel() for p in build_aux(name).parameters())
        result["parameters"][name] = {"kind": "g", "params": n}
        rows.append([name, "g", f"{n:,}", "-"])
    print(table(["model", "kind", "parameters", "HR multiple"], rows, "Parameters"))
    print()

    # -- FLOPs -------------------------------------------------------------------------------------
    rows = []
    for (lw, lh) in sizes:
        hr = (lh * SCALE, lw * SCALE)
        g_fl = aux_flops(args.aux, lh, lw)
        for name in presets:
            m = result["parameters"][name]["spatial_multiple"]
            padded = (round_up(hr[0], m), round_up(hr[1], m))
            step = denoiser_step_flops(name, *padded)
            frame = steps * step + g_fl
            with torch.device("meta"):
                pipe = UPSRPipeline(build_denoiser(name), build_aux(args.aux), device="meta")
            tiles = cli_tiles(pipe, hr, (lh, lw))
            n_tiles, tsize = tile_layout(m, tiles, padded)
            tiled_step = step if n_tiles == 1 else n_tiles * denoiser_step_flops(name, *tsize)
            tiled_frame = steps * tiled_step + g_fl
            result["flops"].append({
                "lr": [lw, lh], "hr": list(hr), "padded": list(padded), "denoiser": name, "aux": args.aux,
                "step_flops": step, "aux_flops": g_fl, "frame_flops": frame,
                "cli_tiles": n_tiles, "cli_tile_size": list(tsize), "cli_frame_flops": tiled_frame,
            })
            rows.append([f"{name}", f"{lw}x{lh}->{hr[1]}x{hr[0]}", f"{padded[1]}x{padded[0]}", fmt_g(step),
                         fmt_g(g_fl), fmt_g(frame),
                         "whole" if n_tiles == 1 else f"{n_tiles}x{tsize[1]}x{tsize[0]}", fmt_g(tiled_frame)])
    print(table(["denoiser", "LR->HR", "padded HR", "GFLOP/step", f"GFLOP g ({args.aux})",
                 f"GFLOP/frame ({steps} steps + g)", "CLI tiles", "GFLOP/frame tiled"], rows,
                "FLOPs (2 x MACs; meta-device count at the full padded size; conv/linear/attention only)"))
    print()

    if args.no_time:
        _finish(result, args)
        return 0

    # -- timing --------------------------------------------------------------------------------------
    rows = []
    for (lw, lh) in sizes:
        hr = (lh * SCALE, lw * SCALE)
        torch.manual_seed(0)
        pipe = UPSRPipeline(build_denoiser(args.time_preset), build_aux(args.aux))
        tiles = cli_tiles(pipe, hr, (lh, lw))
        lr = torch.rand(1, 3, lh, lw, generator=torch.Generator().manual_seed(1)) * 2 - 1
        load0 = os.getloadavg()[0]
        with torch.inference_mode():
            t_frame, all_frame = median_time(lambda: pipe(lr, seed=0, tiles=tiles), args.repeats)
            t_g, all_g = median_time(lambda: pipe._run_aux(pipe.aux, lr, tiles), args.repeats)  # g as the pipeline runs it
            t_bic, all_bic = median_time(
                lambda: F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False).clamp_(-1, 1),
                args.repeats)
        load1 = os.getloadavg()[0]
        step_s = (t_frame - t_g - t_bic) / steps  # rough: the rest of a frame is the denoiser
        result["timing"].append({
            "lr": [lw, lh], "hr": list(hr), "denoiser": args.time_preset, "aux": args.aux,
            "tiles": {"tile": tiles.tile, "overlap": tiles.overlap, "aux_tile": tiles.aux_tile},
            "frame_s": t_frame, "g_s": t_g, "bicubic_s": t_bic, "per_step_s": step_s,
            "runs": {"frame": all_frame, "g": all_g, "bicubic": all_bic},
            "loadavg_before": load0, "loadavg_after": load1,
        })
        size = f"{lw}x{lh}->{hr[1]}x{hr[0]}"
        rows.append([f"UPSR ({args.time_preset} + {args.aux}, {steps} steps)", size, f"{t_frame:.3f}",
                     f"{t_frame / t_bic:,.0f}x", f"{1 / t_frame:.3f}"])
        rows.append(["  per denoiser step ((frame - g - bicubic) / steps)", size, f"{step_s:.3f}", "", ""])
        rows.append([f"g alone ({args.aux})", size, f"{t_g:.3f}", f"{t_g / t_bic:,.1f}x",
                     f"{1 / t_g:.2f}"])
        rows.append(["bicubic", size, f"{t_bic:.4f}", "1x", f"{1 / t_bic:.1f}"])
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    tiles_note = ", ".join(
        f"{r['lr'][0]}x{r['lr'][1]}: tile={r['tiles']['tile']} aux_tile={r['tiles']['aux_tile']}"
        for r in result["timing"])
    print(table(["pipeline", "LR->HR", "s/frame (median)", "vs bicubic", "frames/s"], rows,
                f"CPU time per frame: median of {args.repeats} after 1 warm-up, {args.threads} threads, fp32, "
                f"random weights, CLI tiling ({tiles_note})"))
    print(f"load average (1 min): start {result['machine']['loadavg_start']:.2f}, "
          f"end {result['machine']['loadavg_end']:.2f}; {os.cpu_count()} CPUs")
    _finish(result, args)
    return 0


def _finish(result: dict, args) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
