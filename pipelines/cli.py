"""`upsr-video batch`: the archive command (registered through the `upsr_video.commands` entry point).

The up-scaling options are the `upscale` command's own decorator, so both commands accept the same flags.
Prints the JSON summary on stdout; exit status 0 when every video is done or skipped, 1 when some failed
(the summary lists them with reasons), 2 on a usage/setup error (one line on stderr).
"""
from __future__ import annotations

import contextlib
import json
import sys

import click

from upsr_video.cli import build_options, upscale_options
from upsr_video.process import UpscaleError


@click.command("batch")
@click.argument("input_dir", type=click.Path(file_okay=False))
@click.argument("output_dir", type=click.Path(file_okay=False))
@click.option("--workers", type=int, default=None, help="Ray actors (default: one per GPU, else one per CPU).")
@click.option("--ray-address", default=None, help="Join a Ray cluster: auto or host:port (default: local instance).")
@click.option("--segment-frames", type=int, default=None, help="Frames per segment (default: by length and workers).")
@click.option("--max-attempts", type=int, default=3, show_default=True, help="Attempts per video before it is reported failed.")
@click.option("--retry-failed", is_flag=True, help="Give videos that used up their attempts a fresh budget.")
@click.option("--container", type=click.Choice(["auto", "mp4", "mkv", "mov"]), default="auto", show_default=True,
              help="auto: keep mp4/mov/mkv, m4v -> mp4, avi/webm -> mkv; mkv also where the input has a stream "
              "the kept container cannot hold.")
@click.option("--overwrite", is_flag=True, help="Redo videos whose output exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
@upscale_options
def batch(input_dir, output_dir, workers, ray_address, segment_frames, max_attempts, retry_failed, container,
          overwrite, quiet, **kw):
    """Up-scale every video under INPUT_DIR into OUTPUT_DIR (same folder structure), resumably."""
    from .archive import run_archive

    try:
        opts = build_options(kw)
        # stdout is the JSON summary's alone: Ray's driver messages (a raylet or worker that died) go to stderr
        with contextlib.redirect_stdout(sys.stderr):
            summary = run_archive(input_dir, output_dir, opts, workers=workers, address=ray_address,
                                  segment_frames=segment_frames, max_attempts=max_attempts, overwrite=overwrite,
                                  retry_failed=retry_failed, container=container, quiet=quiet)
    except UpscaleError as e:
        click.echo(f"error: {' '.join(str(e).split()) or type(e).__name__}", err=True)
        sys.exit(2)
    except OSError as e:  # the output tree cannot be created or written
        from .runner import os_error

        click.echo(f"error: {os_error(e)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted; finished segments are kept, rerun to resume", err=True)
        sys.exit(2)
    click.echo(json.dumps(summary))
    sys.exit(1 if summary["failed"] else 0)


if __name__ == "__main__":  # `python -m pipelines.cli INPUT_DIR OUTPUT_DIR ...` without the entry point
    batch()
