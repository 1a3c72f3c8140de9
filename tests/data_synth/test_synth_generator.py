import cv2
import numpy as np
import pytest
from synth_helpers import high_frequency_energy, textured_image

from demoe.config import TASK_NAMES
from demoe.data.synthetic import generator, kernels
from demoe.data.synthetic import (
    DarkSceneConfig,
    DefocusConfig,
    GlobalMotionConfig,
    LowLightConfig,
    ShakeConfig,
    SynthConfig,
    synthesize,
    synthesize_sample,
)
from demoe.data.synthetic.generator import LUMA_WEIGHTS

BLURRING_TASKS = ("defocus", "global_motion", "synth_global_motion", "low_light")


@pytest.mark.parametrize("task", TASK_NAMES)
def test_every_task_returns_float_rgb_in_range_and_keeps_the_target(task):
    sharp = textured_image()
    blurry, target = synthesize(sharp, task, np.random.default_rng(0))
    assert blurry.shape == target.shape == sharp.shape
    assert blurry.dtype == target.dtype == np.float32
    assert 0.0 <= blurry.min() and blurry.max() <= 1.0
    np.testing.assert_array_equal(target, sharp)  # the target is the photograph itself
    assert np.abs(blurry - sharp).mean() > 0.01


@pytest.mark.parametrize("task", BLURRING_TASKS)
def test_blur_removes_high_frequencies(task):
    sharp = textured_image()
    # Low light on its cleanest default sensor: at its darkest, noisiest draws noise adds more
    # fine detail back than the shake removes (as in real night shots), which is not this test.
    sensor = LowLightConfig()
    clean = SynthConfig(low_light=LowLightConfig(full_well=(sensor.full_well[1],) * 2, read_noise=(sensor.read_noise[0],) * 2))
    energies = []
    for seed in range(3):
        blurry, _ = synthesize(sharp, task, np.random.default_rng(seed), clean)
        if task == "low_light":  # compare at equal brightness; noise adds energy back, so loose
            blurry = blurry * (sharp.mean() / blurry.mean())
        energies.append(high_frequency_energy(blurry))
    assert max(energies) < 0.8 * high_frequency_energy(sharp)


def test_defocus_grows_with_the_aperture():
    sharp = textured_image()
    small = SynthConfig(defocus=DefocusConfig(max_radius_px=(1.0, 1.0), num_layers=(2, 2), tilt=(1.0, 1.0)))
    large = SynthConfig(defocus=DefocusConfig(max_radius_px=(6.0, 6.0), num_layers=(2, 2), tilt=(1.0, 1.0)))
    blur_small, _ = synthesize(sharp, "defocus", np.random.default_rng(1), small)
    blur_large, _ = synthesize(sharp, "defocus", np.random.default_rng(1), large)
    assert high_frequency_energy(blur_large) < high_frequency_energy(blur_small)


def test_defocus_keeps_the_focal_layer_sharp():
    # Two layers: one is in focus (radius 0) and must stay close to the photograph away from
    # the layer boundary; the other is blurred.
    sharp = textured_image(128, 128)
    config = SynthConfig(defocus=DefocusConfig(num_layers=(2, 2), max_radius_px=(5.0, 5.0)))
    blurry, _ = synthesize(sharp, "defocus", np.random.default_rng(4), config)
    errors = np.abs(blurry - sharp).mean(axis=2)
    assert (errors < 2e-3).mean() > 0.2  # a sizeable region is untouched
    assert (errors > 0.05).mean() > 0.2  # and a sizeable region is blurred


def test_low_light_is_dark_and_noisy_and_quantised():
    flat = np.full((96, 96, 3), 0.6, dtype=np.float32)
    blurry, target = synthesize(flat, "low_light", np.random.default_rng(0))
    np.testing.assert_array_equal(target, flat)  # target: the normally exposed photograph
    assert blurry.mean() < 0.5 * flat.mean()
    np.testing.assert_allclose(blurry * 255, np.round(blurry * 255), atol=1e-3)  # 8-bit levels

    def relative_noise(full_well: float, read_noise: float) -> float:
        sensor = LowLightConfig(exposure=(0.1, 0.1), full_well=(full_well,) * 2, read_noise=(read_noise,) * 2)
        noisy, _ = synthesize(flat, "low_light", np.random.default_rng(0), SynthConfig(low_light=sensor))
        return float(noisy.std() / noisy.mean())

    # Both ends of the default sensor ranges: the noisy end shows sensor noise on a flat scene,
    # the clean end (as clean as the real low-light shots measured) much less of it.
    default = LowLightConfig()
    noisy = relative_noise(default.full_well[0], default.read_noise[1])
    clean = relative_noise(default.full_well[1], default.read_noise[0])
    assert noisy > 0.02 and clean < noisy / 5


def test_default_low_light_spans_real_night_shots_below_the_dark_scene_band():
    # Measured (docs/synthetic-blur.md): real low-light shots have a mean luma of 0.024-0.156,
    # dark but normally exposed scenes are made at 0.15-0.3. A flat scene of a typical
    # photograph's luma (0.45) at both ends of the default exposures, on the clean sensor:
    scene = np.full((64, 64, 3), 0.45, dtype=np.float32)
    default = LowLightConfig()

    def mean_luma(exposure: float) -> float:
        config = LowLightConfig(exposure=(exposure,) * 2, full_well=(default.full_well[1],) * 2,
                                read_noise=(default.read_noise[0],) * 2)
        blurry, _ = synthesize(scene, "low_light", np.random.default_rng(0), SynthConfig(low_light=config))
        return float((blurry @ LUMA_WEIGHTS).mean())

    assert mean_luma(default.exposure[0]) < 0.03  # as dark as the darkest real shot
    assert 0.1 < mean_luma(default.exposure[1]) < DarkSceneConfig().mean_luminance[0] + 0.01


def test_global_motion_adds_noise_and_jpeg():
    flat = np.full((64, 64, 3), 0.5, dtype=np.float32)
    config = SynthConfig(global_motion=GlobalMotionConfig(shot_noise=(1e-3, 1e-3), jpeg_quality=(80, 80)))
    blurry, _ = synthesize(flat, "global_motion", np.random.default_rng(0), config)
    assert 0.0 < blurry.std() < 0.05  # mild noise
    assert abs(blurry.mean() - 0.5) < 0.01  # a normalised PSF keeps the brightness


def test_local_motion_changes_only_the_moving_object():
    sharp = textured_image(128, 128)
    for seed in range(3):
        sample = synthesize_sample(sharp, "local_motion", np.random.default_rng(seed))
        assert sample.mask is not None and sample.mask.shape == (128, 128)
        outside, inside = sample.mask == 0, sample.mask > 0.5
        assert 0.03 < inside.mean() < 0.6 and outside.mean() > 0.3
        np.testing.assert_array_equal(sample.blurry[outside], sharp[outside])
        assert np.abs(sample.blurry[inside] - sharp[inside]).mean() > 0.02


def test_synth_global_motion_is_a_frame_average():
    sharp = textured_image()
    blurry, _ = synthesize(sharp, "synth_global_motion", np.random.default_rng(0))
    assert np.abs(blurry - sharp).mean() > 0.02
    # Averaging frames is a convex combination: no new extremes on a constant image.
    flat = np.full((48, 48, 3), 0.3, dtype=np.float32)
    flat_blurry, _ = synthesize(flat, "synth_global_motion", np.random.default_rng(0))
    np.testing.assert_allclose(flat_blurry, flat, atol=1e-5)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_deterministic_for_a_seed_and_different_between_seeds(task):
    sharp = textured_image(64, 64)
    first, _ = synthesize(sharp, task, np.random.default_rng(11))
    again, _ = synthesize(sharp, task, np.random.default_rng(11))
    other, _ = synthesize(sharp, task, np.random.default_rng(12))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_grayscale_and_tiny_inputs(task):
    gray = textured_image(40, 40)[..., 0]
    blurry, target = synthesize(gray, task, np.random.default_rng(0))
    assert blurry.shape == target.shape == (40, 40, 3)
    np.testing.assert_array_equal(target[..., 0], target[..., 2])
    tiny = textured_image(6, 5)[..., :1]  # smaller than most kernels
    blurry, target = synthesize(tiny, task, np.random.default_rng(0))
    assert blurry.shape == (6, 5, 3) and np.isfinite(blurry).all()
    assert 0.0 <= blurry.min() and blurry.max() <= 1.0


def test_errors():
    sharp = textured_image(16, 16)
    with pytest.raises(ValueError, match="unknown task"):
        synthesize(sharp, "rain", np.random.default_rng(0))
    with pytest.raises(TypeError, match="float"):
        synthesize((sharp * 255).astype(np.uint8), "defocus", np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        synthesize(np.zeros((16, 16, 4), np.float32), "defocus", np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        synthesize(sharp, "defocus", 0)
    with pytest.raises(ValueError, match="length_px"):
        ShakeConfig(length_px=(5.0, 1.0))


def test_margin_covers_the_largest_psf():
    # A crop's margin must hold the reach of the largest PSF its config can draw.
    config = SynthConfig()
    for task, shake in (("global_motion", config.global_motion.shake), ("low_light", config.low_light.shake)):
        longest = ShakeConfig(length_px=(shake.length_px[1],) * 2, smoothness=shake.smoothness)
        reach = max(
            generator.shake_kernel(np.random.default_rng(seed), longest).shape[0] // 2 for seed in range(20)
        )
        assert reach <= config.margin_px(task, 128)
    radius = config.defocus.max_radius_px[1]
    assert kernels.disk_kernel(radius).shape[0] // 2 <= config.margin_px("defocus", 128)
    line = kernels.linear_motion_kernel(config.local_motion.length_px[1], np.pi / 4)
    assert line.shape[0] // 2 <= config.margin_px("local_motion", 128)
    with pytest.raises(ValueError, match="unknown task"):
        config.margin_px("rain", 128)


@pytest.mark.parametrize("crop", [128, 256])
def test_synth_global_motion_margin_holds_the_largest_warp(crop):
    # The inner crop's corner moves by the camera path (at most the translation extent from
    # the middle frame) plus half the rotation and zoom about the region's centre.
    motion = SynthConfig().synth_global_motion
    margin = SynthConfig().margin_px("synth_global_motion", crop)
    side = crop + 2 * margin
    corner = np.array([margin, margin, 1.0])
    for sign in (-1.0, 1.0):
        matrix = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), sign * motion.rotation_deg[1] / 2,
                                         1.0 + sign * motion.zoom[1] / 2)
        moved = float(np.hypot(*(matrix @ corner - corner[:2])))
        assert moved + motion.translation_px[1] <= margin


def test_synth_global_motion_frames_stay_a_pixel_apart_at_the_longest_path():
    # Longer paths need more virtual frames, or the average shows separate copies (ghosts).
    motion = SynthConfig().synth_global_motion
    assert np.ceil(motion.translation_px[1] / motion.frame_step_px) + 1 <= motion.num_frames[1]
