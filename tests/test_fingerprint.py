"""The resume fingerprint: what a finished part depends on (input, options, checkpoint content, calibration table,
package version, the package's source), and nothing else (a touched checkpoint with the same bytes keeps it)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import upsr_video.resume as resume
import upsr_video.startstep as startstep
from upsr_video.checkpoint import ModelSpec, build_models, save_checkpoint
from upsr_video.models.aux import AUX_PRESETS
from upsr_video.process import UpscaleOptions


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    spec = ModelSpec(aux=AUX_PRESETS["compact-xs"].to_dict(), denoiser=None, info={"name": "fp-test"})
    torch.manual_seed(0)
    den, aux = build_models(spec)
    ckpt = save_checkpoint(tmp_path / "g.safetensors", spec, den, aux)
    clip = tmp_path / "in.mp4"
    clip.write_bytes(b"not decoded: the fingerprint reads only its size and time")
    table = tmp_path / "start_steps.json"
    table.write_text(json.dumps({"factors": {"2": 0, "4": 0}}))
    monkeypatch.setattr(startstep, "TABLE_PATH", table)
    monkeypatch.setattr(startstep.load_table, "__defaults__", (table,))
    return {"ckpt": ckpt, "clip": clip, "table": table, "spec": spec, "den": den, "aux": aux}


def test_touching_the_checkpoint_keeps_the_fingerprint(setup):
    o = UpscaleOptions(checkpoint=str(setup["ckpt"]))
    fp = resume.fingerprint(str(setup["clip"]), o)
    st = os.stat(setup["ckpt"])
    os.utime(setup["ckpt"], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # a reinstall: same bytes
    assert os.stat(setup["ckpt"]).st_mtime_ns != st.st_mtime_ns
    assert resume.fingerprint(str(setup["clip"]), o) == fp
    # the same bytes elsewhere (another install location) are the same checkpoint
    moved = setup["ckpt"].with_name("moved.safetensors")
    moved.write_bytes(setup["ckpt"].read_bytes())
    assert resume.fingerprint(str(setup["clip"]), UpscaleOptions(checkpoint=str(moved))) == fp
    # execution-only options do not matter; output-changing ones do
    assert resume.fingerprint(str(setup["clip"]), UpscaleOptions(checkpoint=str(moved), threads=3)) == fp
    assert resume.fingerprint(str(setup["clip"]), UpscaleOptions(checkpoint=str(moved), seed=1)) != fp


def test_new_weights_table_or_version_change_the_fingerprint(setup, monkeypatch):
    o = UpscaleOptions(checkpoint=str(setup["ckpt"]))
    clip = str(setup["clip"])
    fp = resume.fingerprint(clip, o)
    # another calibration table (an upgrade shipping a new start_steps.json)
    setup["table"].write_text(json.dumps({"factors": {"2": 1, "4": 0}}))
    fp_table = resume.fingerprint(clip, o)
    assert fp_table != fp
    # another package version
    monkeypatch.setattr(resume, "package_version", lambda: "99.0")
    fp_version = resume.fingerprint(clip, o)
    assert fp_version not in (fp, fp_table)
    monkeypatch.undo()
    # other weights under the same name (and the same size)
    with torch.no_grad():
        next(setup["aux"].parameters()).add_(1.0)
    size = os.path.getsize(setup["ckpt"])
    save_checkpoint(setup["ckpt"], setup["spec"], setup["den"], setup["aux"])
    assert os.path.getsize(setup["ckpt"]) == size
    assert resume.fingerprint(clip, o) not in (fp, fp_table, fp_version)


def test_a_checkpoints_own_table_is_the_one_that_counts(setup):
    spec = setup["spec"]
    spec.info["start_steps"] = {"factors": {"4": 2}}
    own = save_checkpoint(setup["ckpt"].with_name("own.safetensors"), spec, setup["den"], setup["aux"])
    assert resume.calibration_table(str(own)) == {"factors": {"4": 2}}
    assert resume.calibration_table(str(setup["ckpt"])) == json.loads(setup["table"].read_text())
    fp = resume.fingerprint(str(setup["clip"]), UpscaleOptions(checkpoint=str(own)))
    setup["table"].write_text(json.dumps({"factors": {"2": 1}}))  # the shipped table is not used by this one
    assert resume.fingerprint(str(setup["clip"]), UpscaleOptions(checkpoint=str(own))) == fp


def test_other_code_changes_the_fingerprint_and_a_copy_of_the_same_code_does_not(setup, tmp_path, monkeypatch):
    """The source digest: a copy of the package elsewhere (another install) digests the same, touching a file
    keeps it, and a changed byte in any module or a new module changes it, and with it the fingerprint."""
    import shutil

    pkg = Path(resume.__file__).resolve().parent
    copy = tmp_path / "copy"
    shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    assert resume.code_digest(str(copy)) == resume.code_digest()
    mod = copy / "motion.py"
    st = os.stat(mod)
    os.utime(mod, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    resume.code_digest.cache_clear()
    assert resume.code_digest(str(copy)) == resume.code_digest()
    mod.write_bytes(mod.read_bytes() + b"# one more comment\n")
    resume.code_digest.cache_clear()  # it is computed once per process and root
    changed = resume.code_digest(str(copy))
    assert changed != resume.code_digest()
    mod.write_bytes(mod.read_bytes()[: -len(b"# one more comment\n")])
    (copy / "video" / "extra.py").write_text("X = 1\n")
    resume.code_digest.cache_clear()
    assert resume.code_digest(str(copy)) not in (resume.code_digest(), changed)
    o, clip = UpscaleOptions(checkpoint=str(setup["ckpt"])), str(setup["clip"])
    fp = resume.fingerprint(clip, o)
    monkeypatch.setattr(resume, "code_digest", lambda: "other code")
    assert resume.fingerprint(clip, o) != fp
