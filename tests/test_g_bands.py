"""The banded g: an unshuffled low-factor network below the switch factor, the x4 network above it."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from upsr_video.checkpoint import ModelSpec, load_checkpoint, save_checkpoint
from upsr_video.models.aux import AUX_PRESETS, AuxConfig, ScaleBands, bands_config, build_aux
from upsr_video.pipeline import TileOptions, UPSRPipeline, make_condition

from tinymodel import randomised, tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _x2u():
    return build_aux(AuxConfig("compact", 2, 8, 2, {"unshuffle": 2}))


def test_unshuffled_g_starts_at_bicubic_and_keeps_odd_sizes():
    g = _x2u().eval()
    lr = torch.rand(1, 3, 37, 51) * 2 - 1
    ref = F.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.equal(g(lr), ref)  # zero-initialised head: the untrained network is bicubic x2
    out = randomised(g)(lr)
    assert out.shape == (1, 3, 74, 102)
    assert not torch.allclose(out, ref, atol=1e-3)


def test_unshuffled_g_body_runs_on_a_quarter_of_the_lr_grid():
    g = randomised(_x2u())
    seen = []
    hook = g.body[0].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    g(torch.rand(1, 3, 36, 50))
    hook.remove()
    assert seen == [(1, 12, 18, 25)]


def test_unshuffled_g_is_equivariant_to_shifts_by_its_factor():
    """Shifting the input by 2 LR pixels shifts the output by 4 HR pixels (away from the borders): the
    unshuffle keeps every LR pixel, in a phase that a shift by u preserves."""
    g = randomised(_x2u())
    lr = torch.rand(1, 3, 40, 40) * 2 - 1
    a = g(lr[..., 2:, 2:])
    b = g(lr)[..., 4:, 4:]
    m = 2 * 2 * (g.receptive_radius + 2)  # HR margin that sees the borders
    assert torch.allclose(a[..., m:-m, m:-m], b[..., m:-m, m:-m], atol=1e-5)


def test_unshuffled_g_tiles_exactly():
    pipe = UPSRPipeline(None, randomised(_x2u()))
    lr = torch.rand(1, 3, 70, 90) * 2 - 1
    size = (105, 135)  # x1.5: the x2 output resized
    _, whole = pipe.condition(lr, size, TileOptions(aux_tile=None))
    _, tiled = pipe.condition(lr, size, TileOptions(aux_tile=23))  # odd tile: rounded up to the phase
    assert torch.allclose(whole, tiled, atol=1e-5)


def _bands(switch=2.0):
    low = randomised(_x2u(), seed=1)
    high = randomised(build_aux("compact-xs"), seed=2)
    return ScaleBands([low, high], [switch, None]), low, high


@pytest.mark.parametrize("size,band", [((45, 60), 0), ((60, 80), 0), ((90, 120), 1), ((120, 160), 1)])
def test_banded_g_picks_the_network_by_factor(size, band):
    bands, low, high = _bands(2.0)
    lr = torch.rand(1, 3, 30, 40) * 2 - 1
    net = (low, high)[band]
    _, g = make_condition(bands, lr, size)
    _, ref = make_condition(net, lr, size)
    assert torch.equal(g, ref)
    _, other = make_condition((high, low)[band], lr, size)
    assert not torch.allclose(g, other, atol=1e-3)


def test_banded_g_takes_the_larger_axis_factor():
    bands, low, high = _bands(2.0)
    lr = torch.rand(1, 3, 30, 40) * 2 - 1
    _, g = make_condition(bands, lr, (45, 100))  # x1.5 in height, x2.5 in width: the x4 band
    assert torch.equal(g, make_condition(high, lr, (45, 100))[1])


def test_banded_g_rejects_bad_limits():
    low, high = _x2u(), build_aux("compact-xs")
    with pytest.raises(ValueError, match="rise"):
        ScaleBands([low, high], [2.0, 3.0])
    with pytest.raises(ValueError, match="rise"):
        ScaleBands([low, low, high], [3.0, 2.0, None])
    with pytest.raises(ValueError, match="LR-grid"):
        ScaleBands([build_aux("out-xs"), high], [2.0, None])


def test_banded_g_checkpoint_round_trip(tmp_path):
    bands, low, high = _bands(2.5)
    cfg = bands_config([(AuxConfig("compact", 2, 8, 2, {"unshuffle": 2}).to_dict(), 2.5),
                        (AUX_PRESETS["compact-xs"].to_dict(), None)])
    spec = ModelSpec(aux=cfg.to_dict())
    path = save_checkpoint(tmp_path / "g.safetensors", spec, None, bands)
    _, _, loaded = load_checkpoint(path)
    assert isinstance(loaded, ScaleBands) and loaded.upto == [2.5, None] and loaded.scale == 4
    lr = torch.rand(1, 3, 30, 40) * 2 - 1
    for size in [(60, 80), (75, 100), (120, 160)]:
        assert torch.equal(make_condition(loaded, lr, size)[1], make_condition(bands, lr, size)[1])


def test_bundle_script_makes_g_banded(tmp_path):
    src = tiny_checkpoint(tmp_path / "src.safetensors")
    low = randomised(_x2u(), seed=3)
    low_path = save_checkpoint(tmp_path / "low.safetensors",
                               ModelSpec(aux=AuxConfig("compact", 2, 8, 2, {"unshuffle": 2}).to_dict(), scale=2,
                                         info={"name": "low"}), None, low)
    dst = tmp_path / "dst.safetensors"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bundle_checkpoint.py"), str(src), str(dst),
                        "--name", "banded", "--low-g", str(low_path), "--switch", "2"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    spec, den, aux = load_checkpoint(dst)
    _, src_den, src_aux = load_checkpoint(src)
    assert spec.info["g_bands"] == {"low_g": "low", "switch": 2.0}
    assert isinstance(aux, ScaleBands)
    for k, v in src_den.state_dict().items():
        assert torch.equal(den.state_dict()[k], v)
    lr = torch.rand(1, 3, 30, 40) * 2 - 1
    assert torch.equal(make_condition(aux, lr, (60, 80))[1], make_condition(low, lr, (60, 80))[1])
    assert torch.equal(make_condition(aux, lr, (120, 160))[1], make_condition(src_aux, lr, (120, 160))[1])


def test_bundle_script_replaces_the_top_band(tmp_path):
    """--high-g swaps the network above the switch of a banded checkpoint (how RLFN became the default's x4 band):
    the denoiser and the low band stay bit for bit, the top band is the new g, and a source without bands is refused."""
    src = tiny_checkpoint(tmp_path / "src.safetensors")
    low = randomised(_x2u(), seed=3)
    low_path = save_checkpoint(tmp_path / "low.safetensors",
                               ModelSpec(aux=AuxConfig("compact", 2, 8, 2, {"unshuffle": 2}).to_dict(), scale=2,
                                         info={"name": "low"}), None, low)
    high = randomised(build_aux("rlfn"), seed=5)
    high_path = save_checkpoint(tmp_path / "high.safetensors",
                                ModelSpec(aux=AUX_PRESETS["rlfn"].to_dict(), info={"name": "high"}), None, high)
    script = [sys.executable, str(ROOT / "scripts" / "bundle_checkpoint.py")]
    banded, dst = tmp_path / "banded.safetensors", tmp_path / "dst.safetensors"
    r = subprocess.run(script + [str(src), str(banded), "--name", "b", "--low-g", str(low_path), "--switch", "2"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(script + [str(banded), str(dst), "--name", "b2", "--high-g", str(high_path)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    spec, den, aux = load_checkpoint(dst)
    _, src_den, _ = load_checkpoint(src)
    assert spec.info["g_bands"] == {"low_g": "low", "switch": 2.0, "high_g": "high"}
    assert isinstance(aux, ScaleBands) and aux.upto == [2.0, None]
    assert spec.aux["extra"]["bands"][1]["aux"]["arch"] == "rlfn"
    for k, v in src_den.state_dict().items():
        assert torch.equal(den.state_dict()[k], v)
    lr = torch.rand(1, 3, 30, 40) * 2 - 1
    assert torch.equal(make_condition(aux, lr, (60, 80))[1], make_condition(low, lr, (60, 80))[1])
    assert torch.equal(make_condition(aux, lr, (120, 160))[1], make_condition(high, lr, (120, 160))[1])
    r = subprocess.run(script + [str(src), str(tmp_path / "x.safetensors"), "--name", "x", "--high-g", str(high_path)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "not banded" in r.stderr
    # published weights (a bare state dict) with their preset
    bare = tmp_path / "published.safetensors"
    save_file(high.state_dict(), str(bare))
    r = subprocess.run(script + [str(banded), str(dst), "--name", "b3", "--high-g", str(bare), "--high-g-arch", "rlfn"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    spec, _, aux = load_checkpoint(dst)
    assert spec.info["g_bands"]["high_g"] == "published.safetensors"
    assert torch.equal(make_condition(aux, lr, (120, 160))[1], make_condition(high, lr, (120, 160))[1])
    # banding and the top band in one call: the same checkpoint as the two calls above
    one = tmp_path / "one.safetensors"
    r = subprocess.run(script + [str(src), str(one), "--name", "b3", "--low-g", str(low_path), "--switch", "2",
                                 "--high-g", str(bare), "--high-g-arch", "rlfn"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    spec1, den1, aux1 = load_checkpoint(one)
    assert spec1.aux == spec.aux and spec1.info["g_bands"] == spec.info["g_bands"]
    for two_calls, one_call in ((aux, aux1), (den, den1)):
        theirs = one_call.state_dict()
        for k, v in two_calls.state_dict().items():
            assert torch.equal(theirs[k], v)
