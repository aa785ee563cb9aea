"""`upsr-video train g|upsr --config configs/....yaml` (also `python -m training`)."""
from __future__ import annotations

import json
import sys

import click
import yaml


def _overrides(pairs: tuple[str, ...]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise click.BadParameter(f"expected key=value, got {p!r}", param_hint="--set")
        k, v = p.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def _run(kind: str, config: str, steps, until, out, device, sets):
    from .config import TrainConfig
    from .trainer import Trainer

    ov = _overrides(sets)
    if steps is not None:
        ov["steps"] = steps
    if out is not None:
        ov["out"] = out
    try:
        cfg = TrainConfig.load(config, ov)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise click.ClickException(f"bad config {config}: {e}")
    if cfg.kind != kind:
        raise click.ClickException(f"{config} is a '{cfg.kind}' config, not '{kind}'")
    tr = Trainer(cfg, device=device)
    tr.train(until=until)
    path = tr.export(tr.out / "model.safetensors")
    click.echo(json.dumps({"checkpoint": str(path), "steps": tr.step, **tr.validate()}))


_opts = [
    click.option("--config", "-c", required=True, type=click.Path(exists=True, dir_okay=False)),
    click.option("--steps", type=int, default=None, help="Override the number of steps (changes the LR schedule)."),
    click.option("--until", type=int, default=None,
                 help="Stop (and save) at this step without changing the schedule; rerun to resume exactly."),
    click.option("--out", type=click.Path(), default=None, help="Override the run folder (resumes if it holds state)."),
    click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)."),
    click.option("--set", "sets", multiple=True, help="Override a config key: --set lr=1e-4 (YAML value)."),
]


def _apply(f):
    for o in reversed(_opts):
        f = o(f)
    return f


@click.group("train", help="Train the auxiliary network g or the UPSR denoiser (writes safetensors checkpoints).")
def train():
    pass


@train.command("g", help="Train the auxiliary SR network g.")
@_apply
def train_g(config, steps, until, out, device, sets):
    _run("g", config, steps, until, out, device, sets)


@train.command("upsr", help="Train the UPSR denoiser with a frozen g.")
@_apply
def train_upsr(config, steps, until, out, device, sets):
    _run("upsr", config, steps, until, out, device, sets)


def main():
    try:
        train(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
