"""Throughput: seconds per frame and peak memory of UPSR video up-scaling against an RRDB x4 network and bicubic.

    python benchmarks/throughput.py [--sizes 270p,540p] [--methods default,large,rrdb,bicubic]
                                    [--devices cpu,cuda] [--repeats 3] [--threads N] [--timeout S] [--json out.json]

Sizes (x4): 270p = 480x270 -> 1920x1080, 540p = 960x540 -> 3840x2160.

Methods, all timed frame by frame as `upsr-video upscale` processes a frame (uint8 RGB frame -> tensor in [-1,1]
-> model -> uint8 RGB frame; decoding and encoding are not included), fp32, batch 1:

* default: the bundled checkpoint (`checkpoint.default_checkpoint_path()`, loaded with `load_pipeline`) when it
  exists, else the upsr-small denoiser + compact-s g with random weights (the output says which).
* large: the upsr-large denoiser (the official UPSR network, random weights) + compact-s g.
  Both UPSR methods run the real video path: `process.make_plan` for the output size and start step the CLI
  would choose at an exact x4 (`--scale 4`), `process.auto_tiles` for the CLI's tiling, and
  `temporal.TemporalUPSR.push` (shared noise per shot, the CLI default) around `pipeline.UPSRPipeline`. The
  shot's noise is drawn in the untimed warm-up frame, as it is once per shot in a video.
* rrdb: an RRDBNet x4 of Real-ESRGAN's size (RealESRGAN_x4plus layout: 23 RRDB blocks, 64 channels, growth 32,
  16,697,987 parameters), random weights. It is tiled with the same policy as the UPSR methods: `auto_tiles`
  for a network with spatial multiple 1 gives HR tiles of 1024 px with 64 px overlap above ~2.3 MPixel, applied
  as LR tiles of 256 px with 16 px overlap through `tiling.tiled_apply` (on the PixelUnshuffle of the output, so
  the blend is a same-size map); below that the whole frame runs at once (270p -> 1080p is a whole frame).
* bicubic: `F.interpolate(..., mode="bicubic")` + clamp, the floor.

Every (method, size, device) runs in its own subprocess (this script with `--one`), so the peak memory is that
configuration's alone: peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss`) and the RSS after imports, model build and
input creation (from /proc/self/status), and their difference; on CUDA also `torch.cuda.max_memory_allocated()`
(peak stats reset after the build; the allocation after the build is reported too). Each configuration runs
one untimed warm-up frame and then --repeats timed frames; the median seconds per frame is reported with frames/s
and the ratios to RRDB and to bicubic at the same size and device (x > 1: slower than the reference). A
configuration that runs longer than --timeout (the whole subprocess: imports, build, warm-up and timed frames)
is killed and reported as "timeout > X s" with the warm-up time when that finished. Timings depend on the load
of the machine: the 1-minute load average is printed before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCALE = 4
SIZES = {"270p": (480, 270), "540p": (960, 540)}  # LR (W, H); x4 -> 1080p and 2160p
METHODS = ("default", "large", "rrdb", "bicubic")
AUX = "compact-s"
DEFAULT_TIMEOUT = 1800.0


# ------------------------------------------------------------------------------------------------------
# RRDBNet x4 (the ESRGAN / Real-ESRGAN generator layout)


def build_rrdb(num_block: int = 23, num_feat: int = 64, num_grow_ch: int = 32, scale: int = 4):
    """RRDBNet as in BasicSR (RealESRGAN_x4plus: 23 blocks, 64 ch, growth 32), randomly initialised."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ResidualDenseBlock(nn.Module):
        """5 convs with dense connections; output scaled by 0.2 and added to the input."""

        def __init__(self, nf: int, gc: int):
            super().__init__()
            self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
            self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
            self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
            self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
            self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)

        def forward(self, x):
            x1 = self.lrelu(self.conv1(x))
            x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
            x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
            x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
            x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
            return x5 * 0.2 + x

    class RRDB(nn.Module):
        """Residual in residual dense block: 3 RDBs, output scaled by 0.2 and added to the input."""

        def __init__(self, nf: int, gc: int):
            super().__init__()
            self.rdb1 = ResidualDenseBlock(nf, gc)
            self.rdb2 = ResidualDenseBlock(nf, gc)
            self.rdb3 = ResidualDenseBlock(nf, gc)

        def forward(self, x):
            return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x

    class RRDBNet(nn.Module):
        def __init__(self):
            super().__init__()
            if scale != 4:
                raise ValueError("only the x4 layout is built here")
            self.scale = scale
            self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
            self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
            self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(0.2, inplace=True)

        def forward(self, x):
            feat = self.conv_first(x)
            feat = feat + self.conv_body(self.body(feat))
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
            feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
            return self.conv_last(self.lrelu(self.conv_hr(feat)))

    return RRDBNet()


# ------------------------------------------------------------------------------------------------------
# one configuration (child process)


def _rss_now_kib() -> int:
    """Current resident set size in KiB (/proc), falling back to the peak so far."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return _maxrss_kib()


def _maxrss_kib() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r  # bytes on macOS, KiB on Linux


def _emit(**kv) -> None:
    """One JSON line to the parent, flushed at once so that a killed child still leaves its progress behind."""
    sys.stdout.write(json.dumps(kv) + "\n")
    sys.stdout.flush()


def _tile_desc(tile, overlap, h: int, w: int, multiple: int) -> str:
    from upsr_video.tiling import tile_starts

    if tile is None:
        return "whole frame"
    t = max(multiple, (tile + multiple - 1) // multiple * multiple)
    th, tw = min(t, h), min(t, w)
    n = len(tile_starts(h, th, overlap, multiple)) * len(tile_starts(w, tw, overlap, multiple))
    return "whole frame" if n == 1 else f"{n} tiles {tw}x{th} (overlap {overlap})"


def _upsr_setup(method: str, lw: int, lh: int, device: str):
    """(step function frame_index -> HR uint8 frame, description dict) for a UPSR method, as the CLI runs it."""
    from fractions import Fraction
    from types import SimpleNamespace

    import torch

    from upsr_video.checkpoint import ModelSpec, default_checkpoint_path, load_pipeline
    from upsr_video.diffusion.schedule import ScheduleConfig
    from upsr_video.models.aux import AUX_PRESETS, build_aux
    from upsr_video.models.unet import DENOISER_PRESETS, build_denoiser, count_parameters
    from upsr_video.pipeline import UPSRPipeline
    from upsr_video.process import UpscaleOptions, auto_tiles, make_plan, to_tensor, to_uint8
    from upsr_video.temporal import TemporalOptions, TemporalUPSR

    torch.manual_seed(0)
    ckpt = default_checkpoint_path()
    if method == "default" and ckpt.exists():
        spec, pipe = load_pipeline(ckpt, device=device)
        weights = f"bundled checkpoint {ckpt.name}"
        den_name = spec.denoiser.get("name", "checkpoint denoiser") if isinstance(spec.denoiser, dict) else "checkpoint"
        model = f"{den_name} + {spec.aux.get('arch', 'g')} (checkpoint)"
    else:
        preset = "upsr-small" if method == "default" else "upsr-large"
        den, aux = build_denoiser(preset), build_aux(AUX)
        spec = ModelSpec(aux=AUX_PRESETS[AUX].to_dict(), denoiser=DENOISER_PRESETS[preset].to_dict())
        pipe = UPSRPipeline(den, aux, ScheduleConfig.from_dict(spec.schedule), device=device)
        weights = "random weights" + (" (no bundled checkpoint)" if method == "default" else "")
        model = f"{preset} + {AUX}"

    # what `upsr-video upscale --scale 4` plans for this input (output size, start step)
    info = SimpleNamespace(width=lw, height=lh, display_size=(Fraction(lw), Fraction(lh)), time_base=Fraction(1, 25),
                           colour=None, pts=[0])
    opts = UpscaleOptions(target=None, scale=float(SCALE))
    plan = make_plan(info, spec, opts, [0])
    tiles = auto_tiles(pipe, opts, plan.out_size, (lh, lw))
    runner = TemporalUPSR(pipe, TemporalOptions(opts.temporal, opts.window, opts.decay, opts.seed), plan.out_size,
                          plan.start_step, tiles)
    evals = plan.steps
    mh, mw = plan.out_size
    m = pipe.multiple
    padded = ((mh + m - 1) // m * m, (mw + m - 1) // m * m)
    params = count_parameters(pipe.denoiser) + count_parameters(pipe.aux)

    def step(idx: int, frame):
        return to_uint8(runner.push(idx, to_tensor(frame, pipe.device), 0, emit=True))

    desc = {
        "model": model, "weights": weights, "params": params,
        "tiling": _tile_desc(tiles.tile, tiles.overlap, *padded, m) + f"; g tiles {tiles.aux_tile} LR px",
        "denoiser_evals": evals, "start_step": plan.start_step, "out_size": list(plan.out_size),
    }
    return step, desc


def _rrdb_setup(lw: int, lh: int, device: str):
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F

    from upsr_video.process import UpscaleOptions, auto_tiles, to_tensor, to_uint8
    from upsr_video.tiling import tiled_apply

    torch.manual_seed(0)
    net = build_rrdb().to(device).eval()
    # the CLI's tile policy for a network without a spatial multiple, in HR px, applied on LR tiles
    tiles = auto_tiles(SimpleNamespace(multiple=1, scale=SCALE), UpscaleOptions(), (lh * SCALE, lw * SCALE), (lh, lw))
    lr_tile = None if tiles.tile is None else tiles.tile // SCALE
    lr_overlap = tiles.overlap // SCALE

    def run(lr):
        if lr_tile is None:
            return net(lr)
        # tiled_apply blends same-size maps: run on LR tiles, blend the x4 output in its PixelUnshuffle form
        hr = tiled_apply(lambda z: F.pixel_unshuffle(net(z), SCALE), lr, lr_tile, lr_overlap)
        return F.pixel_shuffle(hr, SCALE)

    def step(idx: int, frame):
        with torch.no_grad():
            return to_uint8(run(to_tensor(frame, device)).clamp(-1, 1))

    desc = {
        "model": "RRDBNet x4 (23 blocks, 64 ch, growth 32)", "weights": "random weights",
        "params": sum(p.numel() for p in net.parameters()),
        "tiling": "whole frame" if lr_tile is None else
        _tile_desc(lr_tile, lr_overlap, lh, lw, 1).replace("tiles", "LR tiles"),
    }
    return step, desc


def _bicubic_setup(lw: int, lh: int, device: str):
    import torch
    import torch.nn.functional as F

    from upsr_video.process import to_tensor, to_uint8

    def step(idx: int, frame):
        with torch.no_grad():
            lr = to_tensor(frame, device)
            return to_uint8(F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False).clamp_(-1, 1))

    return step, {"model": "F.interpolate bicubic", "weights": "-", "params": 0, "tiling": "whole frame"}


def run_one(cfg: dict) -> int:
    """Child: build one configuration, warm up, time --repeats frames; progress and result as JSON lines."""
    t_start = time.perf_counter()
    import numpy as np
    import torch

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    method, size, device, repeats = cfg["method"], cfg["size"], cfg["device"], int(cfg["repeats"])
    lw, lh = SIZES[size]
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device")
        torch.cuda.init()

    if method in ("default", "large"):
        step, desc = _upsr_setup(method, lw, lh, device)
    elif method == "rrdb":
        step, desc = _rrdb_setup(lw, lh, device)
    elif method == "bicubic":
        step, desc = _bicubic_setup(lw, lh, device)
    else:
        raise SystemExit(f"unknown method {method!r}")
    frame = np.random.default_rng(0).integers(0, 256, size=(lh, lw, 3), dtype=np.uint8)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        cuda_base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    rss_base, maxrss_build = _rss_now_kib(), _maxrss_kib()
    _emit(event="built", build_s=time.perf_counter() - t_start, rss_base_kib=rss_base,
          maxrss_build_kib=maxrss_build, threads=torch.get_num_threads(), **desc)

    def timed(idx: int) -> float:
        t0 = time.perf_counter()
        out = step(idx, frame)  # ends with .cpu() of the uint8 frame: synchronises CUDA
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        assert out.shape == (lh * SCALE, lw * SCALE, 3), out.shape
        return dt

    def peaks() -> dict:
        d = {"maxrss_kib": _maxrss_kib()}
        if cuda:
            d["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
            d["cuda_base_bytes"] = cuda_base
        return d

    warm = timed(0)
    _emit(event="warmup", warmup_s=warm, **peaks())
    times = []
    for i in range(repeats):
        times.append(timed(i + 1))
        _emit(event="run", times_s=times, **peaks())
    res = {"event": "done", "times_s": times, "median_s": statistics.median(times), "warmup_s": warm,
           "rss_base_kib": rss_base, **peaks()}
    if cuda:
        res["cuda_name"] = torch.cuda.get_device_name()
    _emit(**res)
    return 0


# ------------------------------------------------------------------------------------------------------
# driver


def launch(cfg: dict, timeout: float) -> dict:
    """Run one configuration in a fresh interpreter; collect its JSON lines (also after a timeout)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(cfg)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        out, err = proc.communicate()
    wall = time.perf_counter() - t0
    rec = dict(cfg)
    rec["wall_s"] = wall
    for line in out.splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(ev, dict):
            ev.pop("event", None)
            rec.update(ev)
    if timed_out:
        rec["status"] = "timeout"
    elif proc.returncode != 0 or "median_s" not in rec:
        rec["status"] = "error"
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        rec["error"] = lines[-1] if lines else f"exit status {proc.returncode}"
    else:
        rec["status"] = "ok"
    return rec


def table(headers: list[str], rows: list[list], title: str, left: set[int]) -> str:
    """Plain-text table; columns in `left` are left-aligned, the others right-aligned."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def fmt(row):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    line = fmt(headers)
    return "\n".join([title, line, "-" * len(line)] + [fmt(r) for r in cells])


def _mib(kib_or_bytes: float, unit: str = "kib") -> str:
    v = kib_or_bytes / 1024 if unit == "kib" else kib_or_bytes / 2**20
    return f"{v:,.0f}"


def _ratio(a, b) -> str:
    if a is None or b is None or b <= 0:
        return "-"
    r = a / b
    if r >= 100:
        return f"{r:,.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def _fmt_s(s: float) -> str:
    return f"{s:.4f}" if s < 1 else f"{s:.3f}" if s < 100 else f"{s:.1f}"


def report(results: list[dict], args) -> None:
    def med(r):
        return r.get("median_s") if r["status"] == "ok" else None

    ref = {(r["device"], r["size"], r["method"]): med(r) for r in results}
    rows, mem_rows, notes = [], [], []
    for r in results:
        lw, lh = SIZES[r["size"]]
        size = f"{lw}x{lh}->{lw * SCALE}x{lh * SCALE}"
        name = r["method"]
        if r["status"] == "ok":
            m = r["median_s"]
            t, fps = _fmt_s(m), f"{1 / m:.3f}" if m > 0 else "-"
        elif r["status"] == "timeout":
            t = f"timeout > {args.timeout:g} s"
            fps = "-"
            if "warmup_s" in r:
                t += f" (warm-up {r['warmup_s']:.0f} s)"
        else:
            t, fps = "error", "-"
            notes.append(f"{r['device']} {r['size']} {name}: {r.get('error')}")
        m = med(r)
        rows.append([r["device"], size, name, r.get("model", "-"), r.get("tiling", "-"), t, fps,
                     _ratio(m, ref.get((r["device"], r["size"], "rrdb"))),
                     _ratio(m, ref.get((r["device"], r["size"], "bicubic")))])
        if "maxrss_kib" in r:
            peak, base = r["maxrss_kib"], r["rss_base_kib"]
            lb = "" if r["status"] == "ok" else ">= "  # a killed run: the peak up to its last report
            mem = [lb + _mib(peak), _mib(base), lb + _mib(max(0, peak - base))]
        elif "rss_base_kib" in r:
            mem = ["-", _mib(r["rss_base_kib"]), "-"]
        else:
            mem = ["-", "-", "-"]
        if "cuda_peak_bytes" in r:
            lb = "" if r["status"] == "ok" else ">= "
            mem += [lb + _mib(r["cuda_peak_bytes"], "b"), _mib(r["cuda_base_bytes"], "b")]
        else:
            mem += ["-", "-"]
        params = f"{r['params']:,}" if "params" in r else "-"
        mem_rows.append([r["device"], size, name, params] + mem + [r.get("weights", "-")])
    print(table(["device", "LR->HR", "method", "model", "tiling", "s/frame (median)", "frames/s", "vs RRDB",
                 "vs bicubic"], rows,
                f"Time per frame: median of {args.repeats} after 1 warm-up, fp32, batch 1, uint8 frame in -> "
                f"uint8 frame out (no decode/encode); ratio > 1 = slower than the reference", {0, 1, 2, 3, 4}))
    print()
    print(table(["device", "LR->HR", "method", "parameters", "peak RSS MiB", "RSS after build MiB",
                 "peak - build MiB", "CUDA peak alloc MiB", "CUDA after build MiB", "weights"], mem_rows,
                "Peak memory per configuration (own process; RSS = host memory; CUDA = "
                "torch.cuda.max_memory_allocated, peak stats reset after the build; >= : peak until the timeout)",
                {0, 1, 2, 9}))
    extra = []
    for r in results:
        if r["method"] in ("default", "large") and "denoiser_evals" in r:
            extra.append(f"{r['device']} {r['size']} {r['method']}: {r['denoiser_evals']} denoiser evaluations "
                         f"per frame (start step {r['start_step']}, at "
                         f"{r['out_size'][1]}x{r['out_size'][0]})")
    if extra or notes:
        print()
    for line in extra:
        print(line)
    for line in notes:
        print("error: " + line)


def parse_list(text: str, allowed, what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if allowed is not None and s not in allowed]
    if bad or not items:
        raise SystemExit(f"--{what}: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(allowed)}")
    return items


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="270p,540p", help="270p (480x270->1920x1080), 540p (960x540->3840x2160)")
    ap.add_argument("--methods", default=",".join(METHODS), help="default, large, rrdb, bicubic")
    ap.add_argument("--devices", default=None, help="cpu and/or cuda[:N] (default: cpu, plus cuda when available)")
    ap.add_argument("--repeats", type=int, default=3, help="timed frames per configuration (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's default)")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                    help=f"seconds per configuration, whole subprocess (default {DEFAULT_TIMEOUT:g})")
    ap.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one configuration
    args = ap.parse_args(argv)
    if args.one is not None:
        return run_one(json.loads(args.one))
    if args.repeats < 1 or (args.threads is not None and args.threads < 1) or args.timeout <= 0:
        ap.error("--repeats and --threads must be >= 1 and --timeout > 0")

    import torch

    sizes = parse_list(args.sizes, SIZES, "sizes")
    methods = parse_list(args.methods, METHODS, "methods")
    if args.devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = parse_list(args.devices, None, "devices")
        for d in devices:
            if d != "cpu" and not d.startswith("cuda"):
                ap.error(f"--devices: unknown device {d!r} (cpu, cuda, cuda:N)")
            if d.startswith("cuda") and not torch.cuda.is_available():
                ap.error(f"--devices {d}: no CUDA device is available")

    argv_shown = sys.argv[1:] if argv is None else list(argv)
    print("command: python " + shlex.join([sys.argv[0] if argv is None else "benchmarks/throughput.py"] + argv_shown))
    from upsr_video.checkpoint import default_checkpoint_path

    ckpt = default_checkpoint_path()
    print(f"default method: {'bundled checkpoint ' + ckpt.name if ckpt.exists() else 'no bundled checkpoint; upsr-small + ' + AUX + ' with random weights'}")
    gpus = [torch.cuda.get_device_name(0)] if torch.cuda.is_available() else []
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, threads "
          f"{args.threads or torch.get_num_threads()}{', GPU ' + gpus[0] if gpus else ', no GPU'}; "
          f"load average (1 min) {os.getloadavg()[0]:.2f}")
    print()

    result = {
        "command": argv_shown, "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                           "torch": torch.__version__, "gpu": gpus,
                                           "threads": args.threads or torch.get_num_threads(),
                                           "loadavg_start": os.getloadavg()[0]},
        "repeats": args.repeats, "timeout_s": args.timeout, "results": [],
    }
    order = [m for m in ("bicubic", "rrdb", "default", "large") if m in methods]  # references first
    for device in devices:
        for size in sizes:
            for method in order:
                cfg = {"method": method, "size": size, "device": device, "repeats": args.repeats,
                       "threads": args.threads}
                rec = launch(cfg, args.timeout)
                state = (f"{rec['median_s']:.3f} s/frame" if rec["status"] == "ok" else rec["status"])
                print(f"  ran {device:<6} {size} {method:<8} {state:>20}  ({rec['wall_s']:.0f} s wall)", flush=True)
                result["results"].append(rec)
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    # present in the order asked for
    rank = {m: i for i, m in enumerate(methods)}
    shown = sorted(result["results"], key=lambda r: (devices.index(r["device"]), sizes.index(r["size"]),
                                                     rank[r["method"]]))
    print()
    report(shown, args)
    print(f"load average (1 min): start {result['machine']['loadavg_start']:.2f}, "
          f"end {result['machine']['loadavg_end']:.2f}; {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
