"""TLC's local channel statistics (`demoe.nn.layers.local_mean`, `LocalStatistics`) and the
model's `tlc` switch."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import demoe
from demoe.nn.layers import LocalStatistics, SimplifiedChannelAttention, channel_statistics, local_mean

from random_weights import randomize_


def _reference_local_mean(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Brute force: the average of every box that fits ("valid"), replicate-padded back to the
    input size with the extra row/column at the bottom/right, as NAFNet's AvgPool2d."""
    height, width = x.shape[-2:]
    rows, cols = min(rows, height), min(cols, width)
    boxes = F.avg_pool2d(x.double(), (rows, cols), stride=1)
    pads = ((cols - 1) // 2, cols // 2, (rows - 1) // 2, rows // 2)
    return F.pad(boxes, pads, mode="replicate").float()


@pytest.mark.parametrize(
    "size, window",
    [((17, 23), (5, 7)), ((17, 23), (4, 6)), ((9, 40), (1, 13)), ((12, 12), (12, 5)), ((30, 3), (8, 8))],
)
def test_local_mean_is_the_replicate_padded_box_average(size, window):
    x = torch.rand(2, 3, *size) * 4 - 1
    torch.testing.assert_close(local_mean(x, *window), _reference_local_mean(x, *window), atol=2e-6, rtol=0)


def test_local_mean_of_a_window_covering_the_input_is_the_global_mean():
    x = torch.rand(1, 4, 10, 14)
    out = local_mean(x, 10, 99)
    assert out.shape == (1, 4, 1, 1)
    torch.testing.assert_close(out, x.mean(dim=(2, 3), keepdim=True))


def test_local_mean_is_accurate_on_large_maps_and_keeps_the_dtype():
    # float32 running sums of values near 50 over 257 x 333 pixels reach 4e6, where float32
    # steps are 0.25: without the centring the means would be off by ~1e-4
    x = torch.rand(1, 2, 257, 333) + 50.0
    out = local_mean(x, 64, 96)
    torch.testing.assert_close(out, _reference_local_mean(x, 64, 96), atol=1e-5, rtol=0)
    assert local_mean(x.bfloat16(), 64, 96).dtype == torch.bfloat16


def test_local_mean_refuses_empty_windows():
    with pytest.raises(ValueError, match="window sides must be >= 1"):
        local_mean(torch.rand(1, 1, 4, 4), 0, 3)


def test_sca_uses_local_statistics_only_inside_the_context():
    sca = randomize_(SimplifiedChannelAttention(4))
    x = torch.rand(1, 4, 32, 48)
    global_output = sca(x)
    with channel_statistics(LocalStatistics(window=16, image_height=32, image_width=48)):
        local_output = sca(x)
    expected = x * sca.proj(local_mean(x, 16, 16))
    torch.testing.assert_close(local_output, expected)
    assert not torch.allclose(local_output, global_output)
    torch.testing.assert_close(sca(x), global_output)  # the context is gone again


def test_window_shrinks_with_the_level_resolution():
    statistics = LocalStatistics(window=144, image_height=512, image_width=768)
    x = torch.rand(1, 2, 64, 96)  # a level at 1/8 of the input: 18 x 18 feature pixels
    torch.testing.assert_close(statistics.pool(None, x), local_mean(x, 18, 18))


def _model(train_crop: int = 32) -> demoe.model.DeblurUNet:
    config = demoe.create_model("demoe-tiny").config.replace(train_crop=train_crop)
    # scale 0.3: big enough for the channel attention to matter (at 0.1 its output is ~1e-3)
    return randomize_(demoe.model.DeblurUNet(config), seed=3, scale=0.3).eval()


def test_tlc_changes_large_images_and_not_those_within_the_window():
    model = _model(train_crop=32)  # window 48 pixels
    assert model.tlc_window == 48
    # A dark left half and a bright right half: local means differ from the global ones
    # (on i.i.d. noise they would not).
    small, large = torch.rand(1, 3, 40, 44), torch.rand(1, 3, 96, 120)
    large[..., :60] *= 0.1
    with torch.no_grad():
        torch.testing.assert_close(model(small, tlc=True).image, model(small).image)
        plain, local = model(large, task="defocus"), model(large, task="defocus", tlc=True)
    assert float((plain.image - local.image).abs().max()) > 1e-3
    assert torch.isfinite(local.image).all() and local.image.shape == large.shape


def test_tlc_needs_the_training_crop_in_the_config():
    model = _model(train_crop=0)
    with pytest.raises(ValueError, match="train_crop"):
        model(torch.rand(1, 3, 16, 16), tlc=True)
    with pytest.raises(ValueError, match="train_crop must be >= 0"):
        model.config.replace(train_crop=-1)


def test_train_crop_round_trips_through_a_model_directory(tmp_path):
    model = _model(train_crop=96)
    model.save_pretrained(str(tmp_path))
    loaded = demoe.load_model(tmp_path)
    assert loaded.config.train_crop == 96 and loaded.tlc_window == 144
