"""Copy a trained checkpoint into the package as the bundled default, naming it and recording provenance.

    python scripts/bundle_checkpoint.py runs/upsr-small/model.safetensors upsr_video/weights/upsr-small-default.safetensors \
        --name upsr-small-default --note "trained on CPU, see scripts/train_default.sh"

`--low-g CKPT --switch F` makes g banded (models.aux.ScaleBands): CKPT's g serves factors up to F, the source's g
the factors above (scripts/g_bands.py chooses the switch factor by cost). `--high-g CKPT` puts CKPT's g in the top
band of a banded source (the band above its switch; with --low-g, of the bands just made), keeping the denoiser and
the lower bands; with `--high-g-arch PRESET` CKPT is someone else's published state dict for that g preset
(models.aux.AUX_PRESETS), loaded strictly from safetensors (how the default's x4 band became RLFN with its authors'
weights).
"""
import argparse
import json
from pathlib import Path

from safetensors.torch import load_file

from upsr_video.checkpoint import load_checkpoint, save_checkpoint
from upsr_video.models.aux import AUX_PRESETS, ScaleBands, bands_config, build_aux


def load_g(path: str, arch: str | None):
    """(AuxConfig dict, g, name) of a g checkpoint, or of published weights for the preset `arch`."""
    if arch is None:
        spec, _, g = load_checkpoint(path)
        return spec.aux, g, spec.info.get("name", path)
    cfg = AUX_PRESETS[arch]
    g = build_aux(cfg)
    g.load_state_dict(load_file(path), strict=True)
    return cfg.to_dict(), g, Path(path).name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--name", required=True)
    ap.add_argument("--note", default="")
    ap.add_argument("--metrics", default=None, help="JSON file of evaluation figures to record")
    ap.add_argument("--start-steps", default=None,
                    help="calibration table JSON (scripts/calibrate_start_step.py --out) carried in the checkpoint")
    ap.add_argument("--low-g", default=None, help="checkpoint whose g serves the factors up to --switch")
    ap.add_argument("--switch", type=float, default=None, help="the largest factor the low g serves")
    ap.add_argument("--high-g", default=None, help="checkpoint whose g replaces the top band of a banded source")
    ap.add_argument("--high-g-arch", default=None, choices=sorted(AUX_PRESETS),
                    help="--high-g is a published state dict (safetensors) for this g preset")
    a = ap.parse_args()
    if (a.low_g is None) != (a.switch is None):
        ap.error("--low-g and --switch go together")
    if a.high_g_arch and not a.high_g:
        ap.error("--high-g-arch names the preset of --high-g's weights")
    spec, den, aux = load_checkpoint(a.src)
    if a.low_g:
        low_spec, _, low = load_checkpoint(a.low_g)
        if isinstance(aux, ScaleBands):
            ap.error(f"{a.src}: g is already banded")
        spec.aux = bands_config([(low_spec.aux, a.switch), (spec.aux, None)]).to_dict()
        aux = ScaleBands([low, aux], [a.switch, None])
        spec.info["g_bands"] = {"low_g": low_spec.info.get("name", a.low_g), "switch": a.switch}
    if a.high_g:
        if not isinstance(aux, ScaleBands):
            ap.error(f"{a.src}: g is not banded (--high-g replaces the band above the switch; --low-g makes bands)")
        high_cfg, high, high_name = load_g(a.high_g, a.high_g_arch)
        bands = spec.aux["extra"]["bands"]
        spec.aux = bands_config([(b["aux"], b["upto"]) for b in bands[:-1]] + [(high_cfg, None)]).to_dict()
        aux = ScaleBands([*aux.bands[:-1], high], aux.upto)
        spec.info["g_bands"] = {**spec.info.get("g_bands", {}), "high_g": high_name}
    spec.info["name"] = a.name
    if a.note:
        spec.info["note"] = a.note
    if a.metrics:
        spec.info["metrics"] = json.load(open(a.metrics))
    if a.start_steps:
        spec.info["start_steps"] = json.load(open(a.start_steps))
    save_checkpoint(a.dst, spec, den, aux)
    print(a.dst)


if __name__ == "__main__":
    main()
