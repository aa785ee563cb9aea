"""The UPSR denoiser (UNetModelSwin): parameter counts, official key names, checkpoint loading, shapes,
conditioning, gradients and determinism.

The official names, shapes and counts below are written out by hand from the official UPSR code
(basicsr/archs/swin_unet_arch.py `UNetModelSwin`, basicsr/archs/swin_arch.py `BasicLayer`, network_g of
options/000_UPSR_RealSR_x4.yml), not derived from this implementation: an official `.pth` only loads if
they match exactly.
"""
from __future__ import annotations

import re

import pytest
import torch

from upsr_video.models.aux import build_aux
from upsr_video.models.unet import (
    DENOISER_PRESETS,
    DenoiserConfig,
    build_denoiser,
    count_parameters,
    load_official_state_dict,
)
from upsr_video.pipeline import UPSRPipeline

# -- official facts ---------------------------------------------------------------------------------

EXPECTED_PARAMS = {
    "upsr-large": 119_418_319,  # the official network_g (g = ATD is a separate network, not counted)
    "upsr-small": 2_900_168,
    "upsr-tiny": 217_772,
}

OFFICIAL_NUM_KEYS = 570  # state_dict entries: parameters + relative_position_index + 6 attn_mask buffers

OFFICIAL_FIRST_KEYS = [
    "time_embed.0.weight",
    "time_embed.0.bias",
    "time_embed.2.weight",
    "time_embed.2.bias",
    "input_blocks.0.0.weight",
    "input_blocks.0.0.bias",
    "input_blocks.1.0.in_layers.0.weight",
    "input_blocks.1.0.in_layers.0.bias",
    "input_blocks.1.0.in_layers.2.weight",
    "input_blocks.1.0.in_layers.2.bias",
    "input_blocks.1.0.emb_layers.1.weight",
    "input_blocks.1.0.emb_layers.1.bias",
]

OFFICIAL_LAST_KEYS = [
    "output_blocks.11.0.skip_connection.weight",
    "output_blocks.11.0.skip_connection.bias",
    "conv_before_upsample.0.weight",
    "conv_before_upsample.0.bias",
    "conv_up1.weight",
    "conv_up1.bias",
    "conv_up2.weight",
    "conv_up2.bias",
    "conv_hr.weight",
    "conv_hr.bias",
    "conv_last.weight",
    "conv_last.bias",
]

OFFICIAL_SHAPES = {
    "time_embed.0.weight": (640, 160),
    "time_embed.2.weight": (640, 640),
    "input_blocks.0.0.weight": (160, 144, 3, 3),  # 48 (x_t) + 96 (g, y0) unshuffled channels
    "input_blocks.1.0.in_layers.0.weight": (160,),
    "input_blocks.1.0.emb_layers.1.weight": (320, 640),  # scale-shift: 2 x out channels
    "input_blocks.1.0.out_layers.3.weight": (160, 160, 3, 3),
    "input_blocks.1.1.patch_embed.proj.weight": (192, 160, 1, 1),
    "input_blocks.1.1.patch_unembed.proj.weight": (160, 192, 1, 1),
    "input_blocks.1.1.blocks.0.attn.relative_position_bias_table": (225, 6),
    "input_blocks.1.1.blocks.0.attn.relative_position_index": (64, 64),
    "input_blocks.1.1.blocks.0.attn.qkv.weight": (576, 192),
    "input_blocks.1.1.blocks.0.attn.proj.weight": (192, 192),
    "input_blocks.1.1.blocks.0.mlp.fc1.weight": (768, 192, 1, 1),
    "input_blocks.1.1.blocks.0.mlp.fc2.weight": (192, 768, 1, 1),
    "input_blocks.3.0.op.weight": (160, 160, 3, 3),
    "input_blocks.4.0.skip_connection.weight": (320, 160, 1, 1),
    "input_blocks.6.0.op.weight": (320, 320, 3, 3),
    "input_blocks.9.0.op.weight": (320, 320, 3, 3),
    "input_blocks.10.0.in_layers.2.weight": (640, 320, 3, 3),
    "input_blocks.10.0.emb_layers.1.weight": (1280, 640),
    "input_blocks.10.1.patch_embed.proj.weight": (192, 640, 1, 1),
    "middle_block.0.in_layers.2.weight": (640, 640, 3, 3),
    "middle_block.1.blocks.1.attn.relative_position_bias_table": (225, 6),
    "middle_block.2.out_layers.3.weight": (640, 640, 3, 3),
    "output_blocks.0.0.in_layers.0.weight": (1280,),
    "output_blocks.2.1.conv.weight": (640, 640, 3, 3),
    "output_blocks.5.1.conv.weight": (320, 320, 3, 3),
    "output_blocks.8.1.conv.weight": (320, 320, 3, 3),
    "output_blocks.11.0.in_layers.2.weight": (160, 320, 3, 3),
    "output_blocks.11.0.skip_connection.weight": (160, 320, 1, 1),
    "conv_before_upsample.0.weight": (128, 160, 3, 3),
    "conv_up1.weight": (128, 128, 3, 3),
    "conv_up2.weight": (128, 128, 3, 3),
    "conv_hr.weight": (128, 128, 3, 3),
    "conv_last.weight": (3, 128, 3, 3),
    "conv_last.bias": (3,),
}

# Shifted blocks keep their training-size mask as a buffer; the 8x8 level (== window) is never shifted.
OFFICIAL_ATTN_MASKS = {
    "input_blocks.1.1.blocks.1.attn_mask": (64, 64, 64),
    "input_blocks.4.1.blocks.1.attn_mask": (16, 64, 64),
    "input_blocks.7.1.blocks.1.attn_mask": (4, 64, 64),
    "output_blocks.3.1.blocks.1.attn_mask": (4, 64, 64),
    "output_blocks.6.1.blocks.1.attn_mask": (16, 64, 64),
    "output_blocks.9.1.blocks.1.attn_mask": (64, 64, 64),
}

_RES = r"(in_layers\.[02]|emb_layers\.1|out_layers\.[03]|skip_connection)\.(weight|bias)"
_SWIN = (r"(patch_embed\.proj|patch_unembed\.proj|blocks\.[01]\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2))"
         r"\.(weight|bias)|blocks\.[01]\.attn\.(relative_position_bias_table|relative_position_index)"
         r"|blocks\.1\.attn_mask")
OFFICIAL_KEY_PATTERNS = [
    r"time_embed\.[02]\.(weight|bias)",
    r"input_blocks\.0\.0\.(weight|bias)",
    r"(input_blocks\.\d+|output_blocks\.\d+|middle_block)\.0\." + _RES,
    r"middle_block\.2\." + _RES,
    r"(input_blocks\.\d+|output_blocks\.\d+|middle_block)\.1\.(" + _SWIN + ")",
    r"input_blocks\.(3|6|9)\.0\.op\.(weight|bias)",
    r"output_blocks\.(2|5|8)\.1\.conv\.(weight|bias)",
    r"conv_before_upsample\.0\.(weight|bias)",
    r"conv_(up1|up2|hr|last)\.(weight|bias)",
]

# A tiny network with the official head and official mask: what `load_official_state_dict` sees, CPU-sized.
TINY_OFFICIAL = DenoiserConfig(
    model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(0, 1), num_head_channels=8,
    swin_depth=2, swin_embed_dim=16, window_size=4, mlp_ratio=2.0, image_size=16, norm_groups=8,
    head="official", num_feat=16, residual="none", official_swin_mask=True,
)


# -- helpers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: threads cost more than they give, and CI shares the cores
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def large(_one_thread):
    return build_denoiser("upsr-large")


def _model(cfg, seed: int = 0):
    torch.manual_seed(seed)
    return build_denoiser(cfg).eval()


def _perturb(model: torch.nn.Module, seed: int = 1, std: float = 0.05) -> torch.nn.Module:
    """Add seeded noise to every parameter: zero-initialised layers otherwise hide t and block gradients."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)
    return model


def _inputs(h: int, w: int, n: int = 1, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, 3, h, w, generator=gen) * 0.5 for _ in range(3))  # x_t, g, y0


def _err_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, f"error message is not one line: {msg!r}"
    return msg


# -- parameter counts and official names -----------------------------------------------------------


def test_preset_parameter_counts(large):
    assert set(DENOISER_PRESETS) == set(EXPECTED_PARAMS)
    for name, expected in EXPECTED_PARAMS.items():
        model = large if name == "upsr-large" else build_denoiser(name)
        n = count_parameters(model)
        print(f"{name}: {n:,} parameters, spatial multiple {model.spatial_multiple} HR px")
        assert n == expected, (name, n)
    # g is a separate network: the denoiser holds no auxiliary or feature-extractor weights
    assert not [k for k in large.state_dict() if k.startswith(("aux", "g.", "feature_extractor", "net_mse"))]


def test_upsr_large_state_dict_matches_official_names(large):
    sd = large.state_dict()
    keys = list(sd)
    assert len(keys) == OFFICIAL_NUM_KEYS
    assert keys[: len(OFFICIAL_FIRST_KEYS)] == OFFICIAL_FIRST_KEYS
    assert keys[-len(OFFICIAL_LAST_KEYS):] == OFFICIAL_LAST_KEYS
    for k, shape in {**OFFICIAL_SHAPES, **OFFICIAL_ATTN_MASKS}.items():
        assert k in sd, k
        assert tuple(sd[k].shape) == shape, (k, tuple(sd[k].shape), shape)
    assert sorted(k for k in keys if k.endswith("attn_mask")) == sorted(OFFICIAL_ATTN_MASKS)
    # 9 Swin layers (4 down, middle, 4 up) x 2 blocks
    assert sum(k.endswith("relative_position_index") for k in keys) == 18
    assert sum(k.endswith("relative_position_bias_table") for k in keys) == 18
    pats = [re.compile(p) for p in OFFICIAL_KEY_PATTERNS]
    odd = [k for k in keys if not any(p.fullmatch(k) for p in pats)]
    assert not odd, odd[:5]
    assert sum(p.numel() for k, p in sd.items() if not k.endswith(("relative_position_index", "attn_mask"))) \
        == EXPECTED_PARAMS["upsr-large"]


def test_upsr_large_geometry(large):
    # official: reflect-pad the LR input to a multiple of 64 (window 8 at the 1/8 level) -> 256 HR px
    assert large.spatial_multiple == 256
    assert large.in_channels == 144


# -- official checkpoint loading ----------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [TINY_OFFICIAL, "upsr-tiny"], ids=["tiny-official-head", "upsr-tiny"])
def test_load_official_state_dict_round_trip(cfg, tmp_path):
    src = _perturb(_model(cfg, seed=0))
    sd = src.state_dict()
    path = tmp_path / "model.pth"
    torch.save({"params_ema": sd}, path)
    dst = _model(cfg, seed=123)
    assert load_official_state_dict(dst, path) == "params_ema"
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k]), k
    m = dst.spatial_multiple
    x, g, y0 = _inputs(m, 2 * m)
    t = torch.tensor([2])
    with torch.no_grad():
        assert torch.equal(src(x, t, g, y0), dst(x, t, g, y0))


def test_load_prefers_ema_and_accepts_plain_and_ddp_prefix(tmp_path):
    ema = _perturb(_model(TINY_OFFICIAL), seed=1).state_dict()
    raw = _perturb(_model(TINY_OFFICIAL), seed=2).state_dict()
    k0 = "conv_last.weight"
    assert not torch.equal(ema[k0], raw[k0])
    cases = {
        "both.pth": ({"params": raw, "params_ema": ema}, "params_ema", ema),
        "params.pth": ({"params": raw}, "params", raw),
        "plain.pth": (raw, None, raw),
        "ddp.pth": ({"params_ema": {"module." + k: v for k, v in ema.items()}}, "params_ema", ema),
    }
    for name, (obj, key, want) in cases.items():
        torch.save(obj, tmp_path / name)
        model = _model(TINY_OFFICIAL, seed=9)
        assert load_official_state_dict(model, tmp_path / name) == key, name
        assert torch.equal(model.state_dict()[k0], want[k0]), name


def _mark_called(path: str):  # the payload a malicious pickle would run; must never execute
    with open(path, "w") as f:
        f.write("unpickled")
    return path


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_mark_called, (self.marker,))


def test_mismatched_files_give_one_line_errors(tmp_path):
    good = _model(TINY_OFFICIAL).state_dict()
    k0, k1 = "conv_last.weight", "input_blocks.0.0.weight"
    bad = {
        "missing": ({"params_ema": {k: v for k, v in good.items() if k != k0}}, ["missing", k0]),
        "shape": ({"params_ema": {**good, k1: torch.zeros(16, 143, 3, 3)}}, ["shape", k1, "143"]),
        "unexpected": ({"params_ema": {**good, "out.2.weight": torch.zeros(48, 16, 3, 3)}}, ["unexpected", "out.2.weight"]),
        "light_head": ({"params_ema": _model("upsr-tiny").state_dict()}, ["missing", "unexpected", "out.0.weight"]),
        "list": ([torch.zeros(3), torch.ones(2)], ["no state dict"]),
        "tensor": (torch.zeros(3), ["no state dict"]),
        "empty": ({}, ["no state dict"]),
        "not_tensors": ({"params_ema": {**good, k0: 3}}, ["no state dict"]),
    }
    for name, (obj, words) in bad.items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        model = _model(TINY_OFFICIAL, seed=5)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(ValueError) as ei:
            load_official_state_dict(model, path)
        msg = _err_line(ei)
        assert str(path) in msg, (name, msg)
        for w in words:
            assert w in msg, (name, w, msg)
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), name  # untouched

    # not a torch file at all, and no file
    (tmp_path / "junk.pth").write_bytes(b"definitely not a checkpoint")
    for path in (tmp_path / "junk.pth", tmp_path / "absent.pth"):
        with pytest.raises(ValueError) as ei:
            load_official_state_dict(_model(TINY_OFFICIAL), path)
        assert str(path) in _err_line(ei)


def test_checkpoint_with_custom_object_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "executed.txt"
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": _model(TINY_OFFICIAL).state_dict(), "extra": _Payload(str(marker))}, path)
    with pytest.raises(ValueError) as ei:
        load_official_state_dict(_model(TINY_OFFICIAL), path)
    assert "weights-only" in _err_line(ei)
    assert not marker.exists()
    torch.save(_Payload(str(marker)), tmp_path / "evil2.pth")
    with pytest.raises(ValueError):
        load_official_state_dict(_model(TINY_OFFICIAL), tmp_path / "evil2.pth")
    assert not marker.exists()


# -- forward ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["upsr-tiny", "upsr-small"])
def test_forward_shapes_on_odd_multiples(name):
    model = _model(name)
    m = model.spatial_multiple
    assert m % 4 == 0
    for a, b in [(1, 3), (3, 1)]:
        lr_h, lr_w = a * m // 4, b * m // 4
        x, g, y0 = _inputs(4 * lr_h, 4 * lr_w, n=2)
        with torch.no_grad():
            out = model(x, torch.tensor([0, 4]), g, y0)
        assert out.shape == (2, 3, 4 * lr_h, 4 * lr_w)
        assert torch.isfinite(out).all()
    for h, w in [(m + 4, m), (m, 2 * m - 4), (m // 2 + 2, m)]:
        x, g, y0 = _inputs(h, w)
        with pytest.raises(ValueError, match="multiple"):
            model(x, torch.tensor([0]), g, y0)


def test_pipeline_pads_non_multiples_and_returns_4x():
    torch.manual_seed(0)
    pipe = UPSRPipeline(_perturb(build_denoiser("upsr-tiny")), build_aux("compact-xs"))
    lr = torch.rand(1, 3, 13, 21) * 2 - 1  # 52x84 HR is not a multiple of 32: the pipeline pads and crops
    out = pipe(lr, seed=3)
    assert out.shape == (1, 3, 52, 84)
    assert torch.isfinite(out).all() and out.abs().max() <= 1


def test_untrained_residual_model_returns_g():
    model = _model("upsr-tiny")  # zero-initialised last conv, x0 = g + f
    x, g, y0 = _inputs(32, 64)
    with torch.no_grad():
        assert torch.equal(model(x, torch.tensor([3]), g, y0), g)


def test_timestep_conditioning_changes_output():
    for cfg in ("upsr-tiny", TINY_OFFICIAL):
        model = _perturb(_model(cfg))
        m = model.spatial_multiple
        x, g, y0 = _inputs(m, m)
        with torch.no_grad():
            outs = [model(x, torch.tensor([t]), g, y0) for t in range(5)]
            assert torch.equal(model(x, torch.tensor(2), g, y0), outs[2])  # scalar t broadcasts
        for i in range(5):
            for j in range(i + 1, 5):
                assert (outs[i] - outs[j]).abs().max() > 1e-4, (cfg, i, j)


def test_gradient_reaches_every_parameter():
    model = _model("upsr-tiny").train()
    x, g, y0 = _inputs(32, 64, n=2)
    target = torch.zeros_like(x)

    # at initialisation: every parameter is in the graph (no unused parameters, e.g. for DDP)
    torch.nn.functional.mse_loss(model(x, torch.tensor([0, 3]), g, y0), target).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, unused

    # once the zero-initialised layers are non-zero, every parameter gets a non-zero gradient
    _perturb(model)
    model.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(x, torch.tensor([0, 3]), g, y0), target).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
            or p.grad.abs().sum() == 0]
    assert not dead, dead


def test_forward_is_deterministic():
    for cfg in ("upsr-tiny", TINY_OFFICIAL):
        model = _perturb(_model(cfg))
        m = model.spatial_multiple
        x, g, y0 = _inputs(m, 2 * m)
        t = torch.tensor([4])
        with torch.no_grad():
            a = model(x, t, g, y0)
            b = model(x, t, g, y0)
        assert torch.equal(a, b)
        again = _perturb(_model(cfg))  # same seeds -> same weights -> same output
        with torch.no_grad():
            assert torch.equal(again(x, t, g, y0), a)
