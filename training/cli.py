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


def _run(kind: str, config: str, steps, until, out, device, sets, time_budget):
    from .config import TrainConfig
    from .trainer import Trainer

    ov = _overrides(sets)
    if time_budget is not None and (steps is not None or until is not None):
        raise click.UsageError("--time-budget sets the step count itself: give it without --steps / --until")
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
    try:
        tr.train(until=until, time_budget=time_budget)
    except ValueError as e:
        raise click.ClickException(str(e))
    path = tr.export(tr.out / "model.safetensors")
    click.echo(json.dumps({"checkpoint": str(path), "steps": tr.step, **tr.validate()}))


_opts = [
    click.option("--config", "-c", required=True, type=click.Path(exists=True, dir_okay=False)),
    click.option("--steps", type=int, default=None, help="Override the number of steps (changes the LR schedule)."),
    click.option("--until", type=int, default=None,
                 help="Stop (and save) at this step without changing the schedule; rerun to resume exactly."),
    click.option("--time-budget", type=click.FloatRange(min=1), default=None,
                 help="Seconds to train for (a lent GPU): the step count is set from the speed measured in the "
                      "warm-up, logged and exported; --steps with that count reproduces the run."),
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
def train_g(config, steps, until, time_budget, out, device, sets):
    _run("g", config, steps, until, out, device, sets, time_budget)


@train.command("upsr", help="Train the UPSR denoiser with a frozen g.")
@_apply
def train_upsr(config, steps, until, time_budget, out, device, sets):
    _run("upsr", config, steps, until, out, device, sets, time_budget)


def main():
    try:
        train(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
