"""The five blur models: from one sharp sRGB photograph to a (blurry, sharp) training pair.

Each model simulates its capture in linear light: the sRGB image is decoded to linear light,
blurred (and darkened / made noisy) the way the sensor integrates light, and encoded again.
All randomness comes from the `np.random.Generator` passed in, so a seed fixes the result.

Shape: images are (H, W, 3) float32 in [0, 1], sRGB-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from demoe.config import TASK_NAMES
from demoe.data.synthetic import camera, kernels, scene
from demoe.data.synthetic.config import (
    DarkSceneConfig,
    DefocusConfig,
    GlobalMotionConfig,
    LocalMotionConfig,
    LowLightConfig,
    ShakeConfig,
    SynthConfig,
    SynthGlobalMotionConfig,
)


@dataclass(frozen=True)
class SynthSample:
    """One synthesised pair; `mask` marks the blurred region of `local_motion` samples."""

    blurry: np.ndarray  # (H, W, 3) float32 in [0, 1], sRGB
    sharp: np.ndarray  # (H, W, 3) float32 in [0, 1], sRGB: the restoration target
    mask: np.ndarray | None = None  # (H, W) float32 in [0, 1]: how much each pixel is moving-object


def synthesize(
    sharp: np.ndarray, task: str, rng: np.random.Generator, config: SynthConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Blur a sharp photograph with the model of `task` (one of `demoe.config.TASK_NAMES`).

    Args:
        sharp: (H, W, 3), (H, W, 1) or (H, W) float in [0, 1], sRGB; grey becomes RGB.
        task: blur type.
        rng: source of all randomness.
        config: parameter ranges (default `SynthConfig()`).
    Returns:
        (blurry, sharp_target): (H, W, 3) float32 in [0, 1] each. The target is the input
        photograph (as RGB) for every task, including `low_light`.

    Example:
        >>> import numpy as np
        >>> image = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
        >>> blurry, sharp = synthesize(image, "defocus", np.random.default_rng(1))
        >>> blurry.shape, blurry.dtype
        ((64, 64, 3), dtype('float32'))
    """
    sample = synthesize_sample(sharp, task, rng, config)
    return sample.blurry, sample.sharp


def synthesize_sample(
    sharp: np.ndarray, task: str, rng: np.random.Generator, config: SynthConfig | None = None
) -> SynthSample:
    """`synthesize`, also returning the moving-object mask of `local_motion` samples."""
    config = SynthConfig() if config is None else config
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    sharp = _as_rgb_float(sharp)
    if task != "low_light" and config.dark_scene.probability > 0:
        if rng.random() < config.dark_scene.probability:
            sharp = darken(sharp, rng, config.dark_scene)
    if task == "global_motion":
        return SynthSample(global_motion(sharp, rng, config.global_motion), sharp)
    if task == "synth_global_motion":
        return SynthSample(synth_global_motion(sharp, rng, config.synth_global_motion), sharp)
    if task == "local_motion":
        blurry, mask = local_motion(sharp, rng, config.local_motion)
        return SynthSample(blurry, sharp, mask)
    if task == "low_light":
        return SynthSample(low_light(sharp, rng, config.low_light), sharp)
    if task == "defocus":
        return SynthSample(defocus(sharp, rng, config.defocus), sharp)
    raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_NAMES)}")


LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # Rec. 709


def darken(sharp: np.ndarray, rng: np.random.Generator, config: DarkSceneConfig) -> np.ndarray:
    """A normally exposed photograph made a dark scene: linear light scaled so that the mean
    sRGB luma becomes a value drawn from `config.mean_luminance` (photographs already darker
    than that are left as they are). Returns (H, W, 3) float32 sRGB."""
    target = _uniform(rng, config.mean_luminance)
    linear = camera.srgb_to_linear(sharp)
    scale_low, scale_high = 0.0, 1.0
    if float((sharp @ LUMA_WEIGHTS).mean()) <= target:
        return sharp
    for _ in range(20):  # bisection on the linear scale: mean luma is monotonic in it
        scale = 0.5 * (scale_low + scale_high)
        luma = float((camera.linear_to_srgb(linear * np.float32(scale)) @ LUMA_WEIGHTS).mean())
        scale_low, scale_high = (scale, scale_high) if luma < target else (scale_low, scale)
    return np.ascontiguousarray(camera.linear_to_srgb(linear * np.float32(0.5 * (scale_low + scale_high))))


def _as_rgb_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"sharp must be a float array in [0, 1], got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"sharp must be (H, W, 3), (H, W, 1) or (H, W), got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _integer(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def shake_kernel(rng: np.random.Generator, shake: ShakeConfig) -> np.ndarray:
    """A camera-shake PSF with parameters drawn from `shake`. Returns (K, K) float32, sum 1."""
    return kernels.camera_shake_kernel(
        rng,
        length_px=_uniform(rng, shake.length_px),
        num_steps=shake.num_steps,
        smoothness=_uniform(rng, shake.smoothness),
        impulse_probability=shake.impulse_probability,
    )


def global_motion(
    sharp: np.ndarray, rng: np.random.Generator, config: GlobalMotionConfig, jpeg_phase: tuple[int, int] | None = None
) -> np.ndarray:
    """Camera shake over a long exposure (RealBlur-like): the linear image convolved with a
    random shake PSF, mild Poisson-Gaussian noise, sRGB encoding, JPEG compression (at
    `jpeg_phase` in the block grid, `camera.jpeg_compress`; None = drawn)."""
    kernel = shake_kernel(rng, config.shake)
    linear = camera.convolve(camera.srgb_to_linear(sharp), kernel)
    linear = camera.add_heteroscedastic_noise(
        linear, rng, _uniform(rng, config.shot_noise), _uniform(rng, config.read_noise)
    )
    quality = _integer(rng, config.jpeg_quality)
    if jpeg_phase is None:  # where the crop sits in the JPEG's block grid: drawn
        jpeg_phase = tuple(rng.integers(0, camera.JPEG_MCU_PX, size=2))
    return camera.jpeg_compress(camera.linear_to_srgb(linear), quality, jpeg_phase)


def synth_global_motion(sharp: np.ndarray, rng: np.random.Generator, config: SynthGlobalMotionConfig) -> np.ndarray:
    """GoPro-like blur: the average of a virtual high-frame-rate sequence.

    The camera follows a smooth path (translation of `translation_px`, with small rotation
    and zoom); every frame is the photograph warped to the camera's pose, the sharp image
    being the middle frame. As in GoPro, frames are averaged in linear light (gamma
    `config.gamma` as the camera response) and the response is applied to the average.
    """
    height, width = sharp.shape[:2]
    translation = _uniform(rng, config.translation_px)
    num_frames = int(np.clip(np.ceil(translation / config.frame_step_px) + 1, *config.num_frames))
    num_frames += 1 - num_frames % 2  # odd: the middle frame is the sharp one
    path = kernels.smooth_path(rng, translation, num_steps=num_frames, curvature=rng.uniform(0.0, 0.5))
    path = path - path[num_frames // 2]
    rotation = np.radians(_uniform(rng, config.rotation_deg)) * rng.choice((-1.0, 1.0))
    zoom = _uniform(rng, config.zoom) * rng.choice((-1.0, 1.0))
    progress = np.linspace(-0.5, 0.5, num_frames)
    linear = np.power(sharp, config.gamma, dtype=np.float32)
    accumulated = np.zeros_like(linear)
    center = ((width - 1) / 2.0, (height - 1) / 2.0)
    for frame in range(num_frames):
        angle_deg = np.degrees(rotation * progress[frame])
        matrix = cv2.getRotationMatrix2D(center, angle_deg, 1.0 + zoom * progress[frame])
        matrix[:, 2] += path[frame]
        if frame == num_frames // 2:
            accumulated += linear
            continue
        accumulated += cv2.warpAffine(
            linear, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        ).reshape(linear.shape)
    average = accumulated / num_frames
    return np.power(np.clip(average, 0.0, 1.0), 1.0 / config.gamma, dtype=np.float32)


def local_motion(
    sharp: np.ndarray, rng: np.random.Generator, config: LocalMotionConfig
) -> tuple[np.ndarray, np.ndarray]:
    """A moving object over a static background (ReLoBlur-like), composited in linear light.

    An object-shaped, feathered mask selects a layer of the photograph; the layer and its
    mask are blurred together by the object's own straight motion and composited over the
    background, where the object's former place is filled with its blurred surroundings.
    Pixels the moving object never reaches are returned unchanged.

    Returns: (blurry (H, W, 3), mask (H, W) float32 in [0, 1]: blurred object coverage).
    """
    height, width = sharp.shape[:2]
    mask = scene.object_mask(
        rng,
        height,
        width,
        area_fraction=_uniform(rng, config.object_area),
        num_vertices=_integer(rng, config.num_vertices),
        roughness=_uniform(rng, config.roughness),
        feather_px=_uniform(rng, config.feather_px),
    )
    kernel = kernels.linear_motion_kernel(_uniform(rng, config.length_px), rng.uniform(0.0, np.pi))
    linear = camera.srgb_to_linear(sharp)
    background = _fill_behind(linear, mask)
    moving = camera.convolve(np.concatenate([linear * mask[..., None], mask[..., None]], axis=2), kernel)
    coverage = np.clip(moving[..., 3], 0.0, 1.0)
    blurred = moving[..., :3] + (1.0 - coverage[..., None]) * background
    touched = coverage > 1e-6  # elsewhere keep the input bit-exact (no round trip through linear)
    blurry = np.where(touched[..., None], camera.linear_to_srgb(blurred), sharp)
    return blurry.astype(np.float32), np.where(touched, coverage, 0.0).astype(np.float32)


def _fill_behind(linear: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """What the object hid: its surroundings smoothly extended under it (a normalised
    convolution at 1/8 resolution), blended in by the mask."""
    height, width = mask.shape
    small = (max(1, width // 8), max(1, height // 8))
    keep = (1.0 - mask)[..., None]
    weighted = cv2.resize(np.concatenate([linear * keep, keep], axis=2), small, interpolation=cv2.INTER_AREA)
    sigma = max(small) / 6.0
    weighted = cv2.GaussianBlur(weighted.reshape(small[1], small[0], 4), (0, 0), sigmaX=sigma)
    fill = weighted[..., :3] / np.maximum(weighted[..., 3:], 1e-4)
    fill = cv2.resize(fill, (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, 3)
    return linear * keep + fill * mask[..., None]


def low_light(sharp: np.ndarray, rng: np.random.Generator, config: LowLightConfig) -> np.ndarray:
    """A dark hand-held exposure (LOLBlur-like): the linear image scaled down by the exposure,
    convolved with a shake PSF, Poisson-Gaussian sensor noise, sRGB encoding and 8-bit
    quantisation. The target stays the normally exposed photograph."""
    kernel = shake_kernel(rng, config.shake)
    exposure = _uniform(rng, config.exposure)
    linear = camera.convolve(camera.srgb_to_linear(sharp), kernel) * np.float32(exposure)
    noisy = camera.add_poisson_gaussian_noise(
        linear, rng, photons_at_white=_uniform(rng, config.full_well), read_noise=_uniform(rng, config.read_noise)
    )
    return camera.quantize(camera.linear_to_srgb(noisy))


def defocus(sharp: np.ndarray, rng: np.random.Generator, config: DefocusConfig) -> np.ndarray:
    """Depth-varying defocus (DPDD-like): a random layered depth map and focal plane; each
    layer is blurred by the disk PSF of its circle of confusion and the layers are composited
    from back to front with their blurred masks, in linear light.

    The circle-of-confusion radius grows linearly with a layer's distance from the focal
    plane (in the depth map's units, which play the role of inverse depth); the layer
    farthest from focus gets a radius drawn from `max_radius_px`.
    """
    height, width = sharp.shape[:2]
    num_layers = _integer(rng, config.num_layers)
    depth = scene.random_depth_map(
        rng, height, width, correlation=_uniform(rng, config.correlation), tilt=_uniform(rng, config.tilt)
    )
    layers = scene.quantize_depth(depth, num_layers)
    layer_depths = (np.arange(num_layers) + 0.5) / num_layers
    focal_depth = layer_depths[rng.integers(num_layers)]  # the focal plane lies in one layer
    distance = np.abs(layer_depths - focal_depth)
    radii = _uniform(rng, config.max_radius_px) * distance / max(float(distance.max()), 1e-12)
    linear = camera.srgb_to_linear(sharp)
    color = np.zeros((height, width, 3), dtype=np.float32)
    alpha = np.zeros((height, width), dtype=np.float32)
    for layer in reversed(range(num_layers)):  # farthest first
        mask = layers == layer
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if len(rows) == 0:
            continue
        kernel = kernels.disk_kernel(float(radii[layer]))
        # Only the layer's bounding box, grown by the PSF's reach, can change.
        reach = kernel.shape[0] // 2
        box = (
            slice(max(rows[0] - reach, 0), min(rows[-1] + reach + 1, height)),
            slice(max(cols[0] - reach, 0), min(cols[-1] + reach + 1, width)),
        )
        coverage_sharp = mask[box].astype(np.float32)[..., None]
        premultiplied = np.concatenate([linear[box] * coverage_sharp, coverage_sharp], axis=2)
        blurred = camera.convolve(premultiplied, kernel)  # (h, w, 4): colour * alpha, alpha
        coverage = np.clip(blurred[..., 3], 0.0, 1.0)
        transmitted = 1.0 - coverage
        color[box] = color[box] * transmitted[..., None] + blurred[..., :3]
        alpha[box] = alpha[box] * transmitted + coverage
    # Where nearer layers hid part of a farther layer's blur, renormalise instead of darkening.
    composite = color / np.maximum(alpha, 1e-6)[..., None]
    return camera.linear_to_srgb(composite)
