"""Copy a trained checkpoint into the package as the bundled default, naming it and recording provenance.

    python scripts/bundle_checkpoint.py runs/upsr-small/model.safetensors upsr_video/weights/upsr-small-default.safetensors \
        --name upsr-small-default --note "trained on CPU, see scripts/train_default.sh"

`--low-g CKPT --switch F` makes g banded (models.aux.ScaleBands): CKPT's g serves factors up to F, the source's g
the factors above (scripts/g_bands.py chooses the switch factor by cost).
"""
import argparse
import json

from upsr_video.checkpoint import load_checkpoint, save_checkpoint
from upsr_video.models.aux import ScaleBands, bands_config


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
    a = ap.parse_args()
    if (a.low_g is None) != (a.switch is None):
        ap.error("--low-g and --switch go together")
    spec, den, aux = load_checkpoint(a.src)
    if a.low_g:
        low_spec, _, low = load_checkpoint(a.low_g)
        if isinstance(aux, ScaleBands):
            ap.error(f"{a.src}: g is already banded")
        spec.aux = bands_config([(low_spec.aux, a.switch), (spec.aux, None)]).to_dict()
        aux = ScaleBands([low, aux], [a.switch, None])
        spec.info["g_bands"] = {"low_g": low_spec.info.get("name", a.low_g), "switch": a.switch}
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
