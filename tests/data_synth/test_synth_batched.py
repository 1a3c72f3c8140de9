"""The batched torch generator against the numpy reference: its building blocks numerically,
the five blur models statistically (same regions, independent draws), and its batches."""

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as F
from synth_helpers import high_frequency_energy, textured_image

from demoe.config import TASK_NAMES
from demoe.data.synthetic import (
    DarkSceneConfig,
    LowLightConfig,
    PhotoBank,
    SynthConfig,
    SyntheticBlurBatches,
    SyntheticBlurDataset,
    load_photo,
    shipped_photo_paths,
    synthesize_batch,
    synthesize_sample,
)
from demoe.data.synthetic import batched_ops as ops
from demoe.data.synthetic import camera, generator, kernels, scene


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def photos():
    return [load_photo(path) for path in shipped_photo_paths()]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def hwc(images: torch.Tensor) -> np.ndarray:
    return images[0].permute(1, 2, 0).numpy()


def centred(kernel: np.ndarray, half: int) -> np.ndarray:
    """A numpy kernel placed in the middle of a (2 half + 1)^2 grid."""
    grid = np.zeros((2 * half + 1,) * 2, np.float32)
    own = kernel.shape[0] // 2
    grid[half - own : half + own + 1, half - own : half + own + 1] = kernel
    return grid


def psnr(first: np.ndarray, second: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((first - second) ** 2)))


# ---------------------------------------------------------------------------------- blocks


def test_kernels_rasterise_exactly_as_numpy():
    rng = np.random.default_rng(0)
    for _ in range(10):
        path = kernels.camera_shake_trajectory(rng, rng.uniform(3, 13), 48, rng.uniform(0.55, 0.9))
        points, weights = ops.trajectory_points(torch.from_numpy(path)[None], torch.ones(1, 48, dtype=torch.bool), 66)
        ours = ops.splat_kernels(points, weights, 14)[0].numpy()
        np.testing.assert_allclose(ours, centred(kernels.rasterize_trajectory(path), 14), atol=1e-7)
    lengths = torch.tensor([6.0, 13.3, 24.0], dtype=torch.float64)
    angles = torch.tensor([0.1, 1.2, 2.9], dtype=torch.float64)
    lines = ops.linear_motion_kernels(lengths, angles, 24.0)
    for index in range(3):
        reference = kernels.linear_motion_kernel(float(lengths[index]), float(angles[index]))
        np.testing.assert_allclose(lines[index].numpy(), centred(reference, 13), atol=1e-7)
    radii = torch.tensor([0.3, 0.5, 1.7, 3.2, 6.0])
    disks = ops.disk_kernels(radii, 6.0)
    for index in range(5):
        np.testing.assert_allclose(disks[index].numpy(), centred(kernels.disk_kernel(float(radii[index])), 6), atol=1e-7)


def test_shake_kernels_have_the_numpy_distribution():
    """Same ranges, independent draws: the spread of 256 kernels agrees in mean and quartiles."""
    shake = SynthConfig().global_motion.shake
    rng = np.random.default_rng(1)
    reference = [generator.shake_kernel(rng, shake) for _ in range(256)]

    def spread(kernel: np.ndarray) -> float:  # RMS distance of the PSF's mass from its centre
        half = kernel.shape[0] // 2
        ys, xs = np.mgrid[-half : half + 1, -half : half + 1]
        return float(np.sqrt((kernel * (xs**2 + ys**2)).sum()))

    ours = ops.shake_kernels(
        seeded(1),
        ops.uniform(seeded(2), shake.length_px, 256, torch.float64),
        ops.uniform(seeded(3), shake.smoothness, 256, torch.float64),
        shake.num_steps,
        shake.impulse_probability,
        shake.length_px[1],
    ).numpy()
    assert ours.shape[1] // 2 <= SynthConfig().margin_px("global_motion", 64)  # reach within the margin
    np.testing.assert_allclose(ours.sum((1, 2)), 1.0, atol=1e-5)
    theirs, mine = np.array([spread(k) for k in reference]), np.array([spread(k) for k in ours])
    standard_error = math.sqrt(theirs.var() / 256 + mine.var() / 256)
    assert abs(mine.mean() - theirs.mean()) < 4 * standard_error, (mine.mean(), theirs.mean())
    np.testing.assert_allclose(np.percentile(mine, [25, 50, 75]), np.percentile(theirs, [25, 50, 75]), rtol=0.1)


@pytest.mark.parametrize("quality", [75, 95])
def test_jpeg_matches_pil(photos, quality):
    photo = photos[0].astype(np.float32) / 255.0  # astronaut, 256 x 256
    pil = camera.jpeg_compress(photo, quality)
    ours = hwc(ops.jpeg_compress(chw(photo), torch.tensor([quality])))
    np.testing.assert_array_equal(np.round(ours * 255), ours * 255)  # 8-bit levels
    assert psnr(ours, pil) > 44.0  # measured 46.8 (q 75) and 47.3 dB (q 95)
    assert abs(psnr(ours, photo) - psnr(pil, photo)) < 0.1  # the same loss (measured <= 0.02 dB)


def test_jpeg_matches_pil_at_each_sample_s_grid_phase(photos):
    photo = photos[0][:77, :90].astype(np.float32) / 255.0  # sizes that are no multiple of 16
    phases = torch.tensor([[0, 0], [3, 11], [15, 8], [8, 1]])
    ours = ops.jpeg_compress(chw(photo).repeat(4, 1, 1, 1), torch.full((4,), 50), phases)
    assert ours.shape == (4, 3, 77, 90)
    for index, phase in enumerate(phases.tolist()):
        pil = camera.jpeg_compress(photo, 50, tuple(phase))
        assert psnr(ours[index].permute(1, 2, 0).numpy(), pil) > 40.0, phase
    assert psnr(hwc(ours[1:2]), hwc(ours[:1])) < 40.0  # another phase, other blocks


def test_filters_match_opencv():
    rng = np.random.default_rng(0)
    image = rng.random((40, 46)).astype(np.float32)
    for sigma in (0.5, 1.3, 4.0):
        ours = ops.gaussian_blur(torch.from_numpy(image)[None, None], torch.tensor([sigma]), 5.0)[0, 0].numpy()
        np.testing.assert_allclose(ours, cv2.GaussianBlur(image, (0, 0), sigmaX=sigma), atol=1e-6)
    coarse = rng.standard_normal((4, 4)).astype(np.float32)
    ours = ops.resize_bicubic(torch.from_numpy(coarse)[None, None], 50, 50)[0, 0].numpy()
    np.testing.assert_allclose(ours, cv2.resize(coarse, (50, 50), interpolation=cv2.INTER_CUBIC), atol=1e-5)
    photo = textured_image(64, 64)
    matrix = cv2.getRotationMatrix2D((31.5, 31.5), 0.7, 1.01)
    matrix[:, 2] += (3.3, -2.1)
    reference = cv2.warpAffine(photo, matrix, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    ours = hwc(ops.affine_warp(chw(photo), torch.from_numpy(matrix)[None]))
    np.testing.assert_allclose(ours[8:-8, 8:-8], reference[8:-8, 8:-8], atol=1e-5)
    kernel = kernels.camera_shake_kernel(rng, 10.0)
    reach = kernel.shape[0] // 2
    ours = hwc(ops.fft_convolve(chw(photo), torch.from_numpy(kernel)[None]))
    inner = (slice(reach, -reach), slice(reach, -reach))
    np.testing.assert_allclose(ours[inner], camera.convolve(photo, kernel)[inner], atol=1e-5)


def test_polygon_fill_matches_opencv():
    rng = np.random.default_rng(2)
    height, width = 40, 48
    for _ in range(6):
        count = int(rng.integers(5, 13))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = 12 * (1 + rng.uniform(-0.45, 0.45, count))
        vertices = np.array([24.0, 20.0]) + np.stack([radii * np.cos(angles) * 1.2, radii * np.sin(angles) / 1.2], 1)
        canvas = np.zeros((height * 4, width * 4), np.uint8)
        cv2.fillPoly(canvas, [np.round(vertices * 4).astype(np.int32)], 255, lineType=cv2.LINE_8)
        reference = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        padded = np.zeros((12, 2))
        padded[:count] = vertices
        ours = ops.polygon_coverage(torch.from_numpy(padded)[None], torch.tensor([count]), height, width)[0].numpy()
        assert np.abs(ours - reference).mean() < 1e-3  # measured <= 5e-4
        assert abs(ours.sum() - reference.sum()) < 0.01 * reference.sum()


def test_darken_matches_numpy():
    photo = textured_image(48, 48)
    config = DarkSceneConfig(probability=1.0, mean_luminance=(0.2, 0.2))
    reference = generator.darken(photo, np.random.default_rng(0), config)
    ours = hwc(ops_darken(chw(photo), config))
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert abs(float((ours @ generator.LUMA_WEIGHTS).mean()) - 0.2) < 1e-4
    already_dark = photo * 0.1
    np.testing.assert_array_equal(hwc(ops_darken(chw(already_dark), config)), already_dark)


def ops_darken(image: torch.Tensor, config: DarkSceneConfig) -> torch.Tensor:
    from demoe.data.synthetic.batched import darken

    return darken(image, seeded(0), config)


# ---------------------------------------------------------------------------------- models


def regions_for(photos, task: str, crop: int, count: int, seed: int = 5) -> tuple[torch.Tensor, int]:
    margin = SynthConfig().margin_px(task, crop)
    side = crop + 2 * margin
    return PhotoBank(photos, "cpu", side).crops(seeded(seed), count, side), margin


def z_score(theirs: np.ndarray, ours: np.ndarray) -> float:
    """Difference of two independent sample means in standard errors."""
    return float((ours.mean() - theirs.mean()) / math.sqrt(theirs.var() / len(theirs) + ours.var() / len(ours)))


def assert_same_mean(theirs: np.ndarray, ours: np.ndarray, relative: float) -> None:
    """Means of two independent samples agree within 4 standard errors, or `relative`."""
    difference = abs(ours.mean() - theirs.mean())
    assert abs(z_score(theirs, ours)) < 4 or difference < relative * abs(theirs.mean()), (ours.mean(), theirs.mean())


def smooth_texture(count: int, side: int) -> torch.Tensor:
    """(count, 3, side, side) random texture with detail at a few pixels' scale, in [0.1, 0.9]:
    blurs of 1-20 px change it measurably (white noise is flattened by any blur alike)."""
    coarse = torch.rand(count, 3, side // 4 + 1, side // 4 + 1, generator=seeded(9))
    return F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False).clamp(0, 1) * 0.8 + 0.1


def energy_ratio(blurry: np.ndarray, sharp: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Per image: energy of horizontal neighbour differences, blurry over sharp (within
    `where` (B, H, W) when given)."""
    def differences(images):
        return ((images[..., :, 1:] - images[..., :, :-1]) ** 2).mean(1)  # (B, H, W - 1)

    blurred, original = differences(blurry), differences(sharp)
    if where is None:
        return blurred.mean((1, 2)) / original.mean((1, 2))
    inside = where[..., 1:] & where[..., :-1]
    return np.array([b[m].mean() / o[m].mean() for b, o, m in zip(blurred, original, inside) if m.sum() >= 20])


def weaker(bounds: tuple[float, float]) -> tuple[float, float]:
    """The range of a blur half as long (or wide)."""
    return (bounds[0] / 2, bounds[1] / 2)


# Each comparison uses the same config for both generators (two depth layers for defocus: a
# sharper test) and must also tell apart the config of a blur half as large (`weaker`).
_DEFAULT = SynthConfig()
_TWO_LAYERS = dataclasses.replace(_DEFAULT.defocus, num_layers=(2, 2), tilt=(1.0, 1.0))
_SHAKE = _DEFAULT.global_motion.shake
COMPARED = {
    "defocus": (SynthConfig(defocus=_TWO_LAYERS),
                SynthConfig(defocus=dataclasses.replace(_TWO_LAYERS, max_radius_px=weaker(_TWO_LAYERS.max_radius_px)))),
    "global_motion": (_DEFAULT, SynthConfig(global_motion=dataclasses.replace(
        _DEFAULT.global_motion, shake=dataclasses.replace(_SHAKE, length_px=weaker(_SHAKE.length_px))))),
    "synth_global_motion": (_DEFAULT, SynthConfig(synth_global_motion=dataclasses.replace(
        _DEFAULT.synth_global_motion, translation_px=weaker(_DEFAULT.synth_global_motion.translation_px)))),
    "local_motion": (_DEFAULT, SynthConfig(local_motion=dataclasses.replace(
        _DEFAULT.local_motion, length_px=weaker(_DEFAULT.local_motion.length_px)))),
}


@pytest.mark.parametrize("task", sorted(COMPARED))
def test_blur_statistics_match_numpy(task):
    """The same textured regions blurred by both generators, independent draws: the blur
    changes the pixels by the same amount and removes the same share of their fine detail
    (inside the moving object for local motion); a blur half as large is told apart."""
    config, weaker = COMPARED[task]
    crop, count = {"local_motion": (32, 64), "synth_global_motion": (16, 64)}.get(task, (16, 96))  # objects need room
    margin = config.margin_px(task, crop)
    regions = smooth_texture(count, crop + 2 * margin)
    inner = (slice(None), slice(None), slice(margin, margin + crop), slice(margin, margin + crop))
    sharp = regions[inner].numpy()

    def statistics(blurry: np.ndarray, mask: np.ndarray | None) -> dict[str, np.ndarray]:
        if task == "local_motion":
            return {"detail in the object": energy_ratio(blurry[inner], sharp, mask[:, inner[2], inner[3]] > 0.9)}
        return {"change": np.abs(blurry[inner] - sharp).mean((1, 2, 3)), "detail": energy_ratio(blurry[inner], sharp)}

    samples = [synthesize_sample(hwc(regions[i : i + 1]), task, np.random.default_rng(i), config) for i in range(count)]
    reference = statistics(np.stack([s.blurry.transpose(2, 0, 1) for s in samples]),
                           None if task != "local_motion" else np.stack([s.mask for s in samples]))
    runs = {}
    for name, used in (("ours", config), ("weaker", weaker)):
        sample = synthesize_batch(regions, task, seeded(0), used)
        assert sample.blurry.shape == regions.shape and 0.0 <= float(sample.blurry.min()) <= float(sample.blurry.max()) <= 1.0
        torch.testing.assert_close(sample.sharp, regions)  # the target is the region itself
        runs[name] = statistics(sample.blurry.numpy(), None if sample.mask is None else sample.mask.numpy())
    for statistic, theirs in reference.items():
        assert abs(z_score(theirs, runs["ours"][statistic])) < 3, (statistic, theirs.mean(), runs["ours"][statistic].mean())
    assert max(abs(z_score(theirs, runs["weaker"][statistic])) for statistic, theirs in reference.items()) > 3


def test_low_light_is_dark_noisy_and_quantised_like_numpy():
    count = 128
    flat = torch.full((count, 3, 24, 24), 0.6)
    ours = synthesize_batch(flat, "low_light", seeded(0)).blurry.numpy()
    reference = np.stack([
        synthesize_sample(np.full((24, 24, 3), 0.6, np.float32), "low_light", np.random.default_rng(seed)).blurry
        for seed in range(count)
    ]).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(ours * 255, np.round(ours * 255), atol=1e-3)  # 8-bit levels
    assert abs(z_score(reference.mean((1, 2, 3)), ours.mean((1, 2, 3)))) < 3  # exposure
    relative_noise = lambda images: images.std((1, 2, 3)) / images.mean((1, 2, 3))  # noqa: E731
    assert abs(z_score(relative_noise(reference), relative_noise(ours))) < 3  # shot + read noise
    low, high = SynthConfig().low_light.exposure
    darker = SynthConfig(low_light=LowLightConfig(exposure=(low, low + (high - low) * 2 / 3)))
    darker_means = synthesize_batch(flat, "low_light", seeded(0), darker).blurry.numpy().mean((1, 2, 3))
    assert abs(z_score(reference.mean((1, 2, 3)), darker_means)) > 3  # a third less light is told apart


def test_global_motion_noise_is_mild_and_on_jpeg_levels():
    flat = torch.full((16, 3, 48, 48), 0.5)
    ours = synthesize_batch(flat, "global_motion", seeded(0)).blurry.numpy()
    np.testing.assert_array_equal(np.round(ours * 255), ours * 255)
    reference = np.stack([
        synthesize_sample(np.full((48, 48, 3), 0.5, np.float32), "global_motion", np.random.default_rng(seed)).blurry
        for seed in range(16)
    ])
    assert np.abs(ours.mean((1, 2, 3)) - 0.5).max() < 0.01  # a normalised PSF keeps the brightness
    assert_same_mean(reference.std((1, 2, 3)), ours.std((1, 2, 3)), 0.25)


def test_local_motion_mask_matches_numpy_and_the_rest_is_untouched(photos):
    crop, count = 48, 12
    regions, margin = regions_for(photos, "local_motion", crop, count)
    sample = synthesize_batch(regions, "local_motion", seeded(3))
    outside = (sample.mask == 0)[:, None].expand_as(regions)
    torch.testing.assert_close(sample.blurry[outside], regions[outside], rtol=0, atol=0)
    assert float((sample.blurry - regions).abs()[(sample.mask > 0.5)[:, None].expand_as(regions)].mean()) > 0.01
    reference = [synthesize_sample(hwc(regions[i : i + 1]), "local_motion", np.random.default_rng(i)).mask for i in range(count)]
    assert_same_mean(np.array([(m > 0.5).mean() for m in reference]), (sample.mask > 0.5).float().mean((1, 2)).numpy(), 0.15)


def test_object_masks_cover_the_configured_area():
    from demoe.data.synthetic.batched import object_masks

    config = SynthConfig().local_motion
    ours = object_masks(seeded(4), 48, 48, 48, config).numpy()
    rng = np.random.default_rng(4)
    reference = np.stack([
        scene.object_mask(
            rng, 48, 48, rng.uniform(*config.object_area), int(rng.integers(5, 13)), rng.uniform(*config.roughness),
            rng.uniform(*config.feather_px),
        )
        for _ in range(48)
    ])
    assert_same_mean(reference.mean((1, 2)), ours.mean((1, 2)), 0.1)
    assert_same_mean((reference > 0.5).mean((1, 2)), (ours > 0.5).mean((1, 2)), 0.1)


def test_dark_scenes_darken_the_target_and_keep_low_light(photos):
    config = SynthConfig(dark_scene=DarkSceneConfig(probability=1.0))
    regions, _ = regions_for(photos, "defocus", 32, 6)
    sample = synthesize_batch(regions, "defocus", seeded(0), config)
    from demoe.data.synthetic.batched import mean_luma

    luma = mean_luma(sample.sharp)
    was_bright = mean_luma(regions) > 0.3
    assert bool(((luma > 0.15 - 1e-3) & (luma < 0.3 + 1e-3))[was_bright].all())
    untouched = synthesize_batch(regions, "low_light", seeded(0), config)
    torch.testing.assert_close(untouched.sharp, regions)  # low light keeps its normal exposure


@pytest.mark.parametrize("task", TASK_NAMES)
def test_deterministic_for_a_seed_and_different_between_seeds(task):
    images = chw(textured_image(56, 56)).expand(2, -1, -1, -1).contiguous()
    first = synthesize_batch(images, task, seeded(11)).blurry
    again = synthesize_batch(images, task, seeded(11)).blurry
    other = synthesize_batch(images, task, seeded(12)).blurry
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)
    assert not torch.equal(first[0], first[1])  # each sample has its own parameters


def test_errors():
    images = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="unknown task"):
        synthesize_batch(images, "rain", seeded(0))
    with pytest.raises(TypeError, match="float"):
        synthesize_batch((images * 255).to(torch.uint8), "defocus", seeded(0))
    with pytest.raises(ValueError, match="shape"):
        synthesize_batch(images[:, :2], "defocus", seeded(0))
    with pytest.raises(TypeError, match="Generator"):
        synthesize_batch(images, "defocus", 0)


# ---------------------------------------------------------------------------------- batches


def test_photo_bank_crops_are_the_photographs_pixels():
    photo = (np.arange(30 * 40 * 3) % 251).astype(np.uint8).reshape(30, 40, 3)
    small = np.full((12, 10, 3), 7, np.uint8)
    bank = PhotoBank([photo, small], min_side=20)
    assert bank.min_side == 20 and bank.upsampled == 1  # the small photograph was upsampled
    crops = bank.crops(seeded(0), 64, 20, flips=True)
    assert crops.shape == (64, 3, 20, 20)
    found = 0
    for crop in (crops * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy():
        if (crop == 7).all():
            continue
        candidates = [crop, crop[::-1], crop[:, ::-1], crop[::-1, ::-1]]
        matches = [
            (top, left) for candidate in candidates for top in range(11) for left in range(21)
            if np.array_equal(candidate, photo[top : top + 20, left : left + 20])
        ]
        assert matches, "a crop is not a (flipped) window of its photograph"
        found += 1
    assert found > 10
    wide = np.zeros((30, 40, 3), np.uint16) + 65535
    assert float(PhotoBank([wide]).crops(seeded(0), 1, 8).min()) == 1.0  # 16-bit photographs
    with pytest.raises(ValueError, match="at least"):
        bank.crops(seeded(0), 1, 40)


def test_training_inputs_of_every_blur_type_are_on_8_bit_levels():
    """As users' photographs: continuous values for some blur types only would name them."""
    batch = SyntheticBlurBatches(shipped_photo_paths(), crop_size=16, seed=3).batch(0, 10)
    dataset = SyntheticBlurDataset(shipped_photo_paths(), crop_size=16, seed=3)
    items = [dataset[index]["blurry"] for index in range(5)]  # one of each blur type
    for blurry in [batch["blurry"], *items]:
        torch.testing.assert_close(blurry * 255, torch.round(blurry * 255), rtol=0, atol=1e-4)
    assert sorted(set(batch["label"].tolist())) == [0, 1, 2, 3, 4]


def test_batches_are_a_function_of_step_and_rank():
    batches = SyntheticBlurBatches(shipped_photo_paths(), crop_size=16, seed=3)
    assert len(batches) == 6 * 5  # default: photographs x tasks per epoch
    first = batches.batch(4, 10)
    assert first["blurry"].shape == first["sharp"].shape == (10, 3, 16, 16)
    assert first["label"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    again = batches.batch(4, 10)
    for key in ("blurry", "sharp", "label"):
        torch.testing.assert_close(first[key], again[key], rtol=0, atol=0)
    assert not torch.equal(batches.batch(5, 10)["blurry"], first["blurry"])
    # Two ranks share the global batch: tasks continue where the other rank's share ends.
    shares = [batches.batch(4, 10, rank, 2)["label"].tolist() for rank in (0, 1)]
    assert sorted(shares[0] + shares[1]) == first["label"].tolist()
    assert shares == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    odd = batches.batch(1, 3)["label"].tolist()  # items 3, 4, 5 of the run
    assert odd == [0, 3, 4]
    with pytest.raises(ValueError, match="evenly"):
        batches.batch(0, 10, 0, 3)
    with pytest.raises(TypeError, match="sequence"):
        SyntheticBlurBatches("photos/")
