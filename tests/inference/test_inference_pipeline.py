"""The Deblurrer / deblur API: image kinds in = image kinds out, routing once per image,
tiled vs whole agreement, precision fallback, uncertain images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import demoe
from demoe.checkpoints import WeightsNotFoundError
from demoe.config import TASK_NAMES
from demoe.inference.pipeline import Deblurrer, router_probabilities
from demoe.model import DeblurUNet

from inference_testing import photo, psnr, quantized, tiny_model


@pytest.fixture(scope="module")
def deblurrer():
    return Deblurrer(tiny_model(), device="cpu")


NUMPY_KINDS = [
    ((13, 17), np.uint8),
    ((13, 17, 1), np.uint8),
    ((13, 17, 2), np.uint16),
    ((13, 17, 3), np.uint16),
    ((13, 17, 4), np.uint8),
    ((13, 17, 3), np.float32),
    ((13, 17, 4), np.float64),
    ((1, 1), np.uint8),
    ((1, 1, 3), np.float32),
    ((2, 31, 3), np.uint8),
]


@pytest.mark.parametrize("shape,dtype", NUMPY_KINDS, ids=[f"{s}-{np.dtype(d).name}" for s, d in NUMPY_KINDS])
def test_numpy_images_come_back_as_the_same_kind(deblurrer, shape, dtype):
    channels = shape[2] if len(shape) == 3 else 1
    values = photo(shape[0], shape[1], channels)
    image = values.astype(dtype) if np.issubdtype(dtype, np.floating) else quantized(values, dtype)
    image = image.reshape(shape)
    result = deblurrer.restore(image)
    assert result.image.shape == shape
    assert result.image.dtype == dtype
    if channels in (2, 4):  # alpha passed through untouched
        np.testing.assert_array_equal(result.image[..., -1], image[..., -1])
    if np.issubdtype(dtype, np.floating):
        assert result.image.min() >= 0 and result.image.max() <= 1
    assert set(result.task_probs) == set(TASK_NAMES)
    assert abs(sum(result.task_probs.values()) - 1) < 1e-5
    assert len(result.experts_used) == 1
    assert 0 <= result.entropy <= np.log(5) + 1e-6
    assert result.seconds > 0


def test_sixteen_bit_is_processed_at_full_precision(deblurrer):
    base = quantized(photo(24, 24, 3), np.uint16)
    nudged = base.copy()
    nudged[8:16, 8:16] += 40  # below one 8-bit step (257)
    first = deblurrer.restore(base, task="defocus").image
    second = deblurrer.restore(nudged, task="defocus").image
    assert first.dtype == np.uint16
    assert (first != second).any()
    assert not np.all(first % 257 == 0)  # not 8-bit values scaled up


def test_gray_is_restored_as_rgb_and_converted_back(deblurrer):
    gray = photo(20, 24, 1)[..., 0]
    restored_gray = deblurrer.restore(gray, task="defocus").image
    x = torch.from_numpy(np.repeat(gray[None, None], 3, axis=1))
    with torch.no_grad():
        rgb = deblurrer.model(x, task="defocus").image[0].permute(1, 2, 0).numpy()
    expected = np.clip(rgb @ np.array([0.299, 0.587, 0.114], np.float32), 0, 1)
    np.testing.assert_allclose(restored_gray, expected, atol=1e-5)


PIL_MODES = ["L", "LA", "RGB", "RGBA", "P", "PA", "1", "I;16", "I", "CMYK"]


@pytest.mark.parametrize("mode", PIL_MODES)
def test_pil_images_come_back_as_pil_images(deblurrer, mode):
    rgba = quantized(photo(12, 15, 4), np.uint8)
    if mode in ("I;16", "I"):
        image = Image.fromarray(quantized(photo(12, 15, 1)[..., 0], np.uint16))
        if mode == "I":
            image = image.convert("I")
    else:
        image = Image.fromarray(rgba, "RGBA").convert(mode)
    image.info["icc_profile"] = b"profile bytes"
    restored = demoe.deblur(image, model=deblurrer)
    assert isinstance(restored, Image.Image)
    assert restored.size == image.size
    expected_mode = {"P": "RGB", "PA": "RGBA", "1": "L", "CMYK": "RGB"}.get(mode, mode)
    assert restored.mode == expected_mode
    assert restored.info["icc_profile"] == b"profile bytes"
    if mode in ("LA", "RGBA"):
        np.testing.assert_array_equal(np.asarray(restored)[..., -1], np.asarray(image)[..., -1])


def test_bad_inputs_raise_specific_errors(deblurrer):
    with pytest.raises(TypeError, match="numpy array"):
        deblurrer.restore([[0, 1]])
    with pytest.raises(TypeError, match="unsupported pixel type int32"):
        deblurrer.restore(np.zeros((4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="C in 1..4"):
        deblurrer.restore(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        deblurrer.restore(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        deblurrer.restore(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="unknown task 'sharp'"):
        deblurrer.restore(np.zeros((4, 4, 3), np.uint8), task="sharp")
    with pytest.raises(ValueError, match="top_k must be in 1..5"):
        deblurrer.restore(np.zeros((4, 4, 3), np.uint8), top_k=6)
    with pytest.raises(ValueError, match="tile_overlap"):
        deblurrer.restore(np.zeros((40, 40, 3), np.uint8), tile=16, tile_overlap=16)


def test_float_input_is_clipped_and_output_clamped(deblurrer):
    image = photo(16, 16, 3) * 3 - 1  # far outside [0, 1]
    restored = deblurrer.restore(image).image
    assert restored.min() >= 0 and restored.max() <= 1


@pytest.mark.parametrize("height,width,tile,overlap", [(96, 128, 64, 32), (67, 93, 48, 24)])
def test_tiled_and_whole_outputs_agree(deblurrer, height, width, tile, overlap):
    image = photo(height, width, 3, seed=3)
    whole = deblurrer.restore(image, task="local_motion")
    tiled = deblurrer.restore(image, task="local_motion", tile=tile, tile_overlap=overlap)
    assert tiled.tiles > 1
    assert tiled.experts_used == whole.experts_used == ["local_motion"]
    assert psnr(tiled.image, whole.image) >= 45
    # and the tiles really did something: the output is not the input
    assert psnr(whole.image, image) < 40


def test_tiled_auto_routing_matches_whole_when_the_router_sees_the_whole_image(deblurrer):
    image = photo(64, 90, 3, seed=4)
    whole = deblurrer.restore(image)
    tiled = deblurrer.restore(image, tile=48, tile_overlap=16, router_max_pixels=64 * 90)
    assert tiled.task_probs == pytest.approx(whole.task_probs, abs=1e-6)
    assert tiled.experts_used == whole.experts_used
    assert psnr(tiled.image, whole.image) >= 45


def test_every_tile_uses_the_one_decision_taken_on_a_downscaled_view():
    model = tiny_model()
    calls = []
    router_inputs = []
    forward = DeblurUNet.forward

    def spy(self, x, task="auto", top_k=None, **options):
        calls.append((tuple(x.shape), task.clone() if isinstance(task, torch.Tensor) else task, options))
        return forward(self, x, task, top_k, **options)

    model.forward = spy.__get__(model)
    model.router.register_forward_pre_hook(lambda module, args: router_inputs.append(tuple(args[0].shape)))
    deblurrer = Deblurrer(model, device="cpu")
    result = deblurrer.restore(photo(60, 90, 3), top_k=2, tile=32, tile_overlap=8)
    # The router pass (encoder + router only) saw a downscaled view of at most tile**2 pixels:
    # its bottleneck is that view at 1/4 (padded to a multiple of 4).
    view_rows, view_cols = router_inputs[0][2] * 4, router_inputs[0][3] * 4
    assert (view_rows - 3) * (view_cols - 3) <= 32 * 32 < 60 * 90
    # Then the decoder ran with one decision only: the view (recording the channel statistics),
    # every tile summing them, every tile restored with them.
    assert len(calls) == 1 + 2 * result.tiles and result.tiles > 1
    assert [type(c[2]["statistics"]).__name__ for c in calls] == (
        ["StatisticsRecorder"] + ["StatisticsAccumulator"] * result.tiles + ["RecordedStatistics"] * result.tiles
    )
    tile_tasks = [task for _, task, _ in calls]
    assert all(isinstance(t, torch.Tensor) and torch.equal(t, tile_tasks[0]) for t in tile_tasks)
    assert int((tile_tasks[0] > 0).sum()) == 2  # top-2 decided once
    assert result.experts_used == [TASK_NAMES[i] for i in torch.argsort(tile_tasks[0][0], descending=True)[:2]]


def test_image_smaller_than_the_tile_is_processed_whole(deblurrer):
    image = photo(30, 40, 3)
    whole = deblurrer.restore(image)
    single = deblurrer.restore(image, tile=64)
    assert single.tiles == 1
    np.testing.assert_array_equal(single.image, whole.image)


def test_uncertain_images_are_flagged_and_optionally_mixed(deblurrer):
    image = photo(32, 32, 3)
    plain = deblurrer.restore(image, min_confidence=0.99)
    assert plain.low_confidence and len(plain.experts_used) == 1
    soft = deblurrer.restore(image, min_confidence=0.99, uncertain="soft")
    assert soft.low_confidence and len(soft.experts_used) == 2
    assert soft.experts_used[0] == plain.experts_used[0]
    assert sum(soft.expert_weights.values()) == pytest.approx(1.0)
    assert not np.array_equal(soft.image, plain.image)
    confident = deblurrer.restore(image, min_confidence=0.01, uncertain="soft")
    assert not confident.low_confidence and len(confident.experts_used) == 1
    tiled_soft = deblurrer.restore(photo(64, 64, 3), tile=32, tile_overlap=8, min_confidence=0.99, uncertain="soft")
    assert len(tiled_soft.experts_used) == 2


def test_classify_gives_the_routers_probabilities(deblurrer):
    image = photo(40, 40, 3)
    probs = deblurrer.classify(image)
    assert list(probs) == list(TASK_NAMES)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = deblurrer.model(x).router_probs[0]
        assert router_probabilities(deblurrer.model, x)[0] == pytest.approx(expected, abs=1e-6)
    assert list(probs.values()) == pytest.approx(expected.tolist(), abs=1e-6)


def test_fp16_needs_a_gpu_and_bf16_runs_on_the_cpu_close_to_fp32():
    with pytest.raises(ValueError, match="precision fp16 needs a GPU"):
        Deblurrer(tiny_model(), device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="precision must be"):
        Deblurrer(tiny_model(), device="cpu", precision="fp8")
    image = quantized(photo(40, 56, 3), np.uint8)
    fp32 = Deblurrer(tiny_model(), device="cpu").restore(image)
    bf16 = Deblurrer(tiny_model(), device="cpu", precision="bf16").restore(image)
    assert not bf16.fp32_fallback and bf16.experts_used == fp32.experts_used
    assert psnr(bf16.image, fp32.image, 255) > 40  # bf16 keeps ~3 significant digits


class _NaNUnderAutocast(DeblurUNet):
    """A model that overflows in reduced precision (what fp16 can do to a real network)."""

    def forward(self, x, task="auto", top_k=None, **options):
        output = super().forward(x, task, top_k, **options)
        if torch.is_autocast_enabled("cpu"):
            output.image = output.image * float("nan")
        return output


def test_non_finite_half_precision_results_are_redone_in_fp32():
    model = _NaNUnderAutocast(tiny_model().config)
    model.load_state_dict(tiny_model().state_dict())
    deblurrer = Deblurrer(model, device="cpu")
    reference = deblurrer.restore(photo(16, 16, 3), task="defocus").image
    deblurrer.precision = "bf16"  # same model, now under bf16 autocast
    result = deblurrer.restore(photo(16, 16, 3), task="defocus")
    assert result.fp32_fallback
    np.testing.assert_array_equal(result.image, reference)
    tiled = deblurrer.restore(photo(24, 36, 3), task="defocus", tile=16, tile_overlap=4)
    assert tiled.fp32_fallback and np.isfinite(tiled.image).all()


def test_deblurrer_loads_directories_and_refuses_missing_weights(tmp_path, monkeypatch):
    import demoe.checkpoints

    monkeypatch.setattr(demoe.checkpoints, "BUNDLED_DIR", tmp_path / "no-bundle")  # none shipped
    model = tiny_model()
    model.save_pretrained(str(tmp_path / "model"))
    image = quantized(photo(20, 20, 3), np.uint8)
    from_dir = demoe.deblur(image, model=tmp_path / "model", device="cpu")
    from_instance = demoe.deblur(image, model=model, device="cpu")
    np.testing.assert_array_equal(from_dir, from_instance)
    with pytest.raises(WeightsNotFoundError, match="convert-official"):
        Deblurrer(None, device="cpu")
    with pytest.raises(WeightsNotFoundError):
        Deblurrer("no-such-bundle", device="cpu")
    with pytest.raises(TypeError, match="DeblurUNet"):
        Deblurrer(torch.nn.Conv2d(3, 3, 1), device="cpu")


@pytest.mark.parametrize("preset", ["nafnet-tiny-router"])
def test_models_without_experts(preset):
    baseline = Deblurrer(demoe.create_model(preset).eval(), device="cpu")
    result = baseline.restore(quantized(photo(20, 28, 3), np.uint8), tile=16, tile_overlap=4)
    assert result.experts_used == [] and result.task_probs is not None
    with pytest.raises(ValueError, match="no experts"):
        baseline.restore(np.zeros((8, 8, 3), np.uint8), task="defocus")
    no_router = Deblurrer(demoe.create_model("nafnet-tiny-router", router=False).eval(), device="cpu")
    plain = no_router.restore(np.zeros((8, 8, 3), np.uint8))
    assert plain.task_probs is None and plain.entropy is None
    with pytest.raises(ValueError, match="no router"):
        no_router.classify(np.zeros((8, 8, 3), np.uint8))


def test_inference_does_not_import_the_training_stack():
    import subprocess
    import sys

    code = (
        "import sys, demoe.inference, demoe.cli.deblur; "
        "bad = [m for m in sys.modules if m.startswith(('demoe.train', 'demoe.data.synthetic', 'demoe.data.datasets'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
