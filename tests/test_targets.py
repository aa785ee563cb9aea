"""Output geometry for presets, WxH, --scale and --fit."""
import numpy as np
import pytest

from upsr_video.targets import TargetError, output_geometry, parse_target, place


@pytest.mark.parametrize("preset,h", [("720p", 720), ("1080p", 1080), ("1440p", 1440), ("2k", 1440), ("2160p", 2160), ("4K", 2160)])
def test_presets_keep_aspect_even_width(preset, h):
    g = output_geometry(320, 240, preset)
    assert g.canvas == g.content == (round(320 * h / 240 / 2) * 2, h)
    g2 = output_geometry(131, 77, preset)
    assert g2.canvas[1] == h and g2.canvas[0] % 2 == 0
    assert abs(g2.canvas[0] / h - 131 / 77) < 2 / h


def test_scale_and_explicit_size():
    assert output_geometry(131, 77, scale=4).canvas == (524, 308)
    assert output_geometry(131, 77, scale=2.5).canvas == (328, 192)  # even-rounded
    assert output_geometry(640, 272, "1280x544").content == (1280, 544)


def test_fit_modes():
    pad = output_geometry(320, 240, "1920x1080", fit="pad")
    assert pad.canvas == (1920, 1080) and pad.content == (1440, 1080)
    crop = output_geometry(320, 240, "1920x1080", fit="crop")
    assert crop.canvas == (1920, 1080) and crop.content == (1920, 1440)
    st = output_geometry(320, 240, "1920x1080", fit="stretch")
    assert st.content == st.canvas == (1920, 1080)
    frame = np.full((1080, 1440, 3), 200, np.uint8)
    out = place(frame, pad)
    assert out.shape == (1080, 1920, 3)
    assert out[:, :240].max() == 0 and out[:, 240:1680].min() == 200 and out[:, 1680:].max() == 0
    big = np.arange(1440 * 1920, dtype=np.int64).reshape(1440, 1920)
    c = place(big, crop)
    assert c.shape == (1080, 1920) and c[0, 0] == big[180, 0]


@pytest.mark.parametrize("bad", ["999q", "0x100", "100000x10", "", "x1080"])
def test_bad_targets(bad):
    with pytest.raises(TargetError):
        parse_target(bad, None)


def test_scale_range_and_exclusive():
    with pytest.raises(TargetError):
        parse_target(None, 0.5)
    with pytest.raises(TargetError):
        parse_target("1080p", 2.0)
