"""Copy a trained checkpoint into the package as the bundled default, naming it and recording provenance.

    python scripts/bundle_checkpoint.py runs/upsr-small/model.safetensors upsr_video/weights/upsr-small-default.safetensors \
        --name upsr-small-default --note "trained on CPU, see scripts/train_default.sh"
"""
import argparse
import json

from upsr_video.checkpoint import load_checkpoint, save_checkpoint


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--name", required=True)
    ap.add_argument("--note", default="")
    ap.add_argument("--metrics", default=None, help="JSON file of evaluation figures to record")
    ap.add_argument("--start-steps", default=None,
                    help="calibration table JSON (scripts/calibrate_start_step.py --out) carried in the checkpoint")
    a = ap.parse_args()
    spec, den, aux = load_checkpoint(a.src)
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
