"""`upsr-video` command line. Errors become one line on stderr and a non-zero exit, never a traceback.

Commands from the sibling packages (`train` from training/, `batch` and the Ray runner from pipelines/) are
discovered through the `upsr_video.commands` / `upsr_video.runners` entry points, so this package never
imports them directly.
"""
from __future__ import annotations

import json
import sys
import time
from importlib.metadata import entry_points

import click

from .process import UpscaleError, UpscaleOptions
from .temporal import MODES


class Progress:
    """One self-rewriting stderr line: frames done, fps, ETA."""

    def __init__(self, total: int, label: str = "upscale", enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.done, self.t0, self.last = 0, time.perf_counter(), 0.0

    def __call__(self, n: int = 1):
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.last > 0.5 or self.done == self.total):
            self.last = now
            el = now - self.t0
            fps = self.done / el if el > 0 else 0.0
            eta = (self.total - self.done) / fps if fps > 0 else 0.0
            pct = 100.0 * self.done / max(1, self.total)
            sys.stderr.write(f"\r{self.label}: {self.done}/{self.total} frames [{pct:5.1f}%] {fps:6.2f} fps  ETA {int(eta) // 60:02d}:{int(eta) % 60:02d}")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="upsr-video")
def main():
    """Temporally consistent video super-resolution with UPSR."""


def upscale_options(f):
    opts = [
        click.option("--target", "-t", default=None, help="720p, 1080p, 1440p/2k, 2160p/4k or WxH (default 1080p)."),
        click.option("--scale", "-s", type=float, default=None, help="Scale factor instead of --target."),
        click.option("--fit", type=click.Choice(["pad", "crop", "stretch"]), default="pad", show_default=True,
                     help="Aspect mismatch with an explicit WxH."),
        click.option("--checkpoint", "--model", "checkpoint", default=None, help="Checkpoint (.safetensors or folder); default: bundled."),
        click.option("--steps", default="auto", show_default=True,
                     help="Denoiser calls per frame: auto (calibrated per scale factor) or N in 1..T "
                          "(N < T: truncated start at step N-1; T: full sampling)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--temporal", type=click.Choice(MODES), default=UpscaleOptions.temporal, show_default=True,
                     help="flow: noise and uncertainty follow optical flow; recurrent: the start re-uses the warped "
                          "previous output; flow-recurrent: both; shared: one screen-fixed noise per shot; "
                          "independent: per-frame noise."),
        click.option("--anchor-strength", "anchor", type=click.FloatRange(0, 1, max_open=True), default=UpscaleOptions.anchor,
                     show_default=True, help="Recurrent modes: weight of the warped previous output in the start."),
        click.option("--scene-threshold", type=float, default=None, help="Scene-cut threshold (default: detector's)."),
        click.option("--tile", type=int, default=None, help="Tile size in input pixels (bounds memory)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
                     show_default=True, help="auto: bf16 on a CUDA GPU that supports it, else fp32 (CPU: fp32)."),
        click.option("--batch-size", type=int, default=0, show_default=True,
                     help="Frames per model batch (g and the denoiser run on the batch; decoding and encoding "
                          "overlap it on their own threads). 0: 4 on CUDA, 1 on CPU."),
        click.option("--compile", is_flag=True, default=False,
                     help="torch.compile the networks (CUDA; the first batch of each shape compiles)."),
        click.option("--fps", default=None, help="Frame rate (25, 30000/1001) for a video whose timestamps are "
                     "missing or all equal (default: its declared rate); valid timestamps are always kept."),
        click.option("--streams", type=click.Choice(["keep", "convert", "drop-unsupported"]), default="keep",
                     show_default=True, help="Streams the output container cannot hold: keep (an error), convert "
                     "(audio to AAC, text subtitles; others dropped) or drop-unsupported."),
        click.option("--codec", default="libx264", show_default=True),
        click.option("--crf", type=int, default=18, show_default=True),
        click.option("--preset", default="medium", show_default=True),
        click.option("--pix-fmt", default="auto", show_default=True,
                     help="auto: yuv420p, or yuv420p10le for a source with more than 8 bits per sample."),
        click.option("--threads", type=int, default=0, help="CPU threads for torch and OpenCV (0: every core)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def build_options(kw: dict) -> UpscaleOptions:
    target, scale = kw.pop("target"), kw.pop("scale")
    if target is None and scale is None:
        target = "1080p"
    kw["steps"] = _parse_steps(kw.get("steps", "auto"), kw.get("checkpoint"))
    if kw.get("fps") is not None:
        from .video import VideoError
        from .video.probe import parse_rate

        try:
            kw["fps"] = str(parse_rate(kw["fps"]))
        except VideoError as e:
            raise UpscaleError(str(e)) from None
    return UpscaleOptions(target=target, scale=scale, **kw)


def _parse_steps(value, checkpoint):
    """--steps: "auto" or an int in 1..T of the checkpoint, checked here so that every command (upscale, batch,
    --workers) fails at once with one line; make_plan checks it again for callers of the Python API."""
    from .startstep import StepsError, parse_steps, resolve_start, schedule_steps

    if str(value).strip().lower() == "auto":
        return "auto"
    spec = None
    try:
        from .checkpoint import default_checkpoint_path, read_checkpoint

        spec = read_checkpoint(checkpoint or default_checkpoint_path())[0]
    except Exception:  # a bad checkpoint is reported, with its own message, where it is loaded
        pass
    try:
        steps = parse_steps(value, schedule_steps(spec) if spec is not None else None)
        if spec is not None:
            resolve_start(spec, 4.0, steps)  # the range check (the factor does not matter for an explicit N)
        return steps
    except StepsError as e:
        raise UpscaleError(str(e)) from None


@main.command()
@click.argument("input", type=click.Path())
@click.option("-o", "--output", default=None, help="Output file (default: INPUT stem + _upsr + the input's container "
              "where it holds every stream, else .mkv).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--workers", type=int, default=None, help="Run segments on N Ray actors (local Ray instance; with --ray-address and no N: one per GPU, else per CPU).")
@click.option("--ray-address", default=None, help="Join a Ray cluster: auto or host:port.")
@click.option("--segment-frames", type=int, default=None, help="Frames per segment (the unit of resuming).")
@click.option("--no-resume", is_flag=True, help="Start over: do not reuse the finished segments of an interrupted run.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@upscale_options
def upscale(input, output, overwrite, workers, ray_address, segment_frames, no_resume, quiet, **kw):
    """Up-scale INPUT to a target resolution, keeping audio, subtitles, timing and colour."""
    from pathlib import Path

    try:
        opts = build_options(kw)
        if output is None:
            from .upscale import default_output

            output = default_output(input)
        if not Path(input).exists():
            raise UpscaleError(f"input not found: {input}")
        if workers or ray_address:
            runner = _plugin("upsr_video.runners", "ray")
            import contextlib

            # stdout is the JSON summary's alone: Ray's driver messages (a raylet or worker that died) go to stderr
            with contextlib.redirect_stdout(sys.stderr):
                summary = runner(input, output, opts, overwrite=overwrite, workers=workers, address=ray_address,
                                 segment_frames=segment_frames, quiet=quiet, resume=not no_resume)
        else:
            from .upscale import upscale_video

            prog = {}

            def on_start(prep, pipe):
                prog["p"] = Progress(prep.info.num_frames, enabled=not quiet)
                if not pipe.is_diffusion:
                    click.echo("note: this checkpoint has no denoiser: output is g alone (fallback)", err=True)

            summary = upscale_video(input, output, opts, overwrite, lambda n: prog["p"](n), on_start,
                                    segment_frames=segment_frames, resume=not no_resume)
    except UpscaleError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; no output written (finished segments are kept: run again to resume)")
    except MemoryError:
        _fail("out of memory: use --tile to process frames in smaller tiles")
    click.echo(json.dumps(summary))


@main.command()
@click.argument("input", type=click.Path(exists=True))
@click.option("--gt", type=click.Path(exists=True), default=None, help="Ground-truth frames folder or video (fidelity metrics, tOF, tLPIPS).")
@click.option("--make-lr", type=int, default=None, help="INPUT is high-res: make the LR by bicubic down-scaling by this factor (then INPUT is the GT).")
@click.option("--methods", default=None, help="Comma-separated methods [default: all: bicubic, lanczos, g, "
              "upsr-<mode> for every --temporal mode, unw-off].")
@click.option("--scale", type=int, default=4, show_default=True, help="Up-scaling factor of the comparison.")
@click.option("--checkpoint", default=None, help="Checkpoint (default: bundled).")
@click.option("--max-frames", type=int, default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", default="auto", show_default=True,
              help="Denoiser calls of the UPSR methods, as `upscale --steps`: auto (calibrated per factor) or N in 1..T.")
@click.option("--lpips-weights", default=None, help="LPIPS alex weights (.safetensors); env UPSR_LPIPS_WEIGHTS.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Report folder (JSON, CSV, PNG plots, preview).")
def compare(input, gt, make_lr, methods, scale, checkpoint, max_frames, seed, steps, lpips_weights, out_dir):
    """Run several methods on the same clip; write a table, plots and a side-by-side preview. The UPSR methods run
    the path `upscale` ships (output-size diffusion, the same start step for the same factor and --steps)."""
    from .checkpoint import CheckpointError, load_pipeline
    from .eval import compare as cmp
    from .startstep import StepsError, resolve_start

    try:
        names = [m.strip() for m in methods.split(",") if m.strip()] if methods else list(cmp.ALL_METHODS)
        bad = [m for m in names if m not in cmp.ALL_METHODS]
        if bad:
            raise UpscaleError(f"unknown method(s) {', '.join(bad)}; known: {', '.join(cmp.ALL_METHODS)}")
        frames = cmp.read_frames(input, max_frames)
        if make_lr:
            gt_frames = [f[: f.shape[0] // make_lr * make_lr, : f.shape[1] // make_lr * make_lr] for f in frames]
            lr = cmp.downscale(frames, make_lr)
            scale = make_lr
        else:
            lr = frames
            gt_frames = cmp.read_frames(gt, len(lr)) if gt else None
            if gt_frames is not None:
                lr = lr[: len(gt_frames)]
        size = gt_frames[0].shape[:2] if gt_frames is not None else (lr[0].shape[0] * scale, lr[0].shape[1] * scale)
        if gt_frames is not None:
            gt_frames = [g[: size[0], : size[1]] for g in gt_frames]
        steps = _parse_steps(steps, checkpoint)
        pipe, start = None, None
        if any(m not in ("bicubic", "lanczos") for m in names):
            spec, pipe = load_pipeline(checkpoint)
            start = resolve_start(spec, max(size[0] / lr[0].shape[0], size[1] / lr[0].shape[1]), steps)
        lp = None
        if gt_frames is not None:  # before the long part: a missing weights file fails at once
            from .eval.lpips_alex import load_lpips

            lp = load_lpips(lpips_weights)
        from .upscale import cuts_of_frames

        cuts = cuts_of_frames(lr)
        outputs, secs = {}, {}
        for m in names:
            outputs[m], secs[m] = cmp.run_method(m, lr, size, pipe, cuts, seed, start)
            click.echo(f"{m}: {secs[m]:.3f} s/frame", err=True)
        rows, curves = cmp.evaluate(outputs, lr, gt_frames, cuts, scale, lp, secs)
        files = cmp.write_report(out_dir, rows, curves, outputs, gt_frames, lr)
    except (UpscaleError, CheckpointError, StepsError, FileNotFoundError, ValueError) as e:
        _fail(str(e).splitlines()[0])
    click.echo(json.dumps({"rows": rows, "files": files, "cuts": cuts, "start_step": start}))


@main.command("eval")
@click.argument("output", type=click.Path(exists=True))
@click.option("--gt", type=click.Path(exists=True), default=None, help="Ground truth (frames folder or video): PSNR/SSIM-Y, LPIPS, tOF, tLPIPS.")
@click.option("--input", "lr_input", type=click.Path(exists=True), default=None,
              help="The LR input the output was made from (flow reference when there is no GT; sets the shave).")
@click.option("--max-frames", type=int, default=None)
@click.option("--lpips-weights", default=None, help="LPIPS alex weights (.safetensors); env UPSR_LPIPS_WEIGHTS.")
@click.option("--out", "out_dir", default=None, type=click.Path(), help="Write table.json/csv and per-frame plots here.")
def eval_cmd(output, gt, lr_input, max_frames, lpips_weights, out_dir):
    """Measure fidelity (with --gt) and temporal stability of an up-scaled OUTPUT (video or frames folder)."""
    from .eval import compare as cmp

    try:
        frames = cmp.read_frames(output, max_frames)
        gt_frames = cmp.read_frames(gt, len(frames)) if gt else None
        lr = cmp.read_frames(lr_input, len(frames)) if lr_input else None
        if gt_frames is None and lr is None:
            raise UpscaleError("give --gt or --input: temporal metrics need a flow reference")
        h, w = frames[0].shape[:2]
        if gt_frames is not None:
            n = min(len(frames), len(gt_frames))
            if gt_frames[0].shape[:2] != (h, w):
                raise UpscaleError(f"GT is {gt_frames[0].shape[1]}x{gt_frames[0].shape[0]}, output is {w}x{h}")
            frames, gt_frames = frames[:n], gt_frames[:n]
        scale = h / lr[0].shape[0] if lr else 4.0
        lr = lr[: len(frames)] if lr else [_stand_in_lr(f, scale) for f in frames]
        from .upscale import cuts_of_frames

        cuts = cuts_of_frames(lr)
        lp = None
        if gt_frames is not None:
            from .eval.lpips_alex import load_lpips

            lp = load_lpips(lpips_weights)
        rows, curves = cmp.evaluate({"output": frames}, lr, gt_frames, cuts, scale, lp)
        files = {}
        if out_dir:
            files = cmp.write_tables(out_dir, rows, curves)
    except (UpscaleError, FileNotFoundError, ValueError, OSError) as e:
        _fail(str(e).splitlines()[0])
    click.echo(json.dumps({"frames": len(frames), "cuts": cuts, **rows[0], "files": files}))


def _stand_in_lr(frame, scale: float):
    """A stand-in LR frame (the output down-scaled) when only GT is given: used for cut detection only."""
    import cv2

    h, w = frame.shape[:2]
    return cv2.resize(frame, (max(1, round(w / scale)), max(1, round(h / scale))), interpolation=cv2.INTER_AREA)


def _plugin(group: str, name: str):
    for ep in entry_points(group=group):
        if ep.name == name:
            return ep.load()
    raise UpscaleError(f"the '{name}' plugin is not installed (entry point group {group})")


def _add_plugins():
    for ep in entry_points(group="upsr_video.commands"):
        try:
            main.add_command(ep.load(), ep.name)
        except ImportError as e:  # a broken optional plugin must not break the main command
            click.echo(f"warning: command {ep.name!r} unavailable: {e}", err=True)


_add_plugins()
