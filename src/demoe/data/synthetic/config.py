"""Parameter ranges of the synthetic blur models, as typed frozen dataclasses.

Every `(low, high)` pair is a range that one value is drawn from uniformly per sample.
Lengths and radii are in pixels of the image handed to `synthesize` (training photographs of a
few hundred pixels per side, like BSD, Urban100, Kodak). The model deblurs users' images at their
own size, so the default ranges cover real blur measured in pixels of the real images as stored
(GoPro 1280x720, LOLBlur 1120x640, CUHK 640 px): docs/synthetic-blur.md, "Real blur against the
synthetic blur" (benchmarks/compare_real_blur.py). Intensities are in linear light, white = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

Range = tuple[float, float]


def _check_range(name: str, value: Range, low: float = 0.0, high: float = math.inf) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must be a (low, high) pair with {low} <= low <= high <= {high}, got {value}")


@dataclass(frozen=True)
class ShakeConfig:
    """Camera shake: a random walk with inertia (after Boracchi & Foi, 2012)."""

    length_px: Range = (3.0, 13.0)  # extent of the trajectory (largest distance of two points)
    smoothness: Range = (0.55, 0.9)  # velocity memory per step: 1 = straight line, 0 = white noise
    impulse_probability: float = 0.04  # chance per step of an abrupt jerk (a sudden hand twitch)
    num_steps: int = 48  # time steps of the exposure

    def __post_init__(self) -> None:
        _check_range("length_px", self.length_px)
        _check_range("smoothness", self.smoothness, 0.0, 1.0)
        if not 0.0 <= self.impulse_probability <= 1.0:
            raise ValueError(f"impulse_probability must be in [0, 1], got {self.impulse_probability}")
        if self.num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {self.num_steps}")


@dataclass(frozen=True)
class GlobalMotionConfig:
    """`global_motion`: long hand-held exposure (RealBlur-like): one shake kernel, sensor noise, JPEG."""

    # Extent up to 20 px (was 13): real camera shake (RealBlur-J night frames, 667x760) has p90
    # edge widths of 5.1-8.2 px, ~10-18 px of kernel length on the GoPro pairs' scale; 3-13 px
    # synthetic shake gave kernels of 3.4-14.3 px (fitted) and widths of 4.9 px (median).
    shake: ShakeConfig = field(default_factory=lambda: ShakeConfig(length_px=(3.0, 20.0)))
    shot_noise: Range = (0.0, 6e-4)  # Poisson gain: variance = shot_noise * signal (linear light)
    read_noise: Range = (0.0, 2e-3)  # Gaussian read-noise standard deviation (linear light)
    jpeg_quality: tuple[int, int] = (75, 95)  # PIL JPEG quality of the blurry image

    def __post_init__(self) -> None:
        _check_range("shot_noise", self.shot_noise)
        _check_range("read_noise", self.read_noise)
        _check_range("jpeg_quality", self.jpeg_quality, 1, 100)


@dataclass(frozen=True)
class SynthGlobalMotionConfig:
    """`synth_global_motion`: GoPro-like averaging of a virtual high-frame-rate sequence."""

    # Extent of the smooth camera path over the exposure; up to 32 px (was 22): kernels fitted on
    # the real GoPro pairs (1280x720) are 9-21 px long (tiles up to 23 px), and 3 of the 14
    # blurry-only GoPro frames have wider edges (p90 9.2-9.5 px) than the 20-px pair (8.9 px).
    translation_px: Range = (5.0, 32.0)
    rotation_deg: Range = (0.0, 1.0)  # in-plane rotation over the exposure (either direction)
    zoom: Range = (0.0, 0.02)  # relative scale change over the exposure (in or out)
    frame_step_px: float = 1.0  # largest motion between two virtual frames (sets the frame count)
    num_frames: tuple[int, int] = (7, 41)  # bounds of the virtual frame count (GoPro averaged 7-13)
    # Camera response the frames are averaged under: 1.0 = averaged as stored (sRGB), as the
    # GoPro images everyone benchmarks on (GOPRO_Large `blur/`; `blur_gamma/` used 2.2). Measured
    # (docs/synthetic-blur.md): real GoPro pairs have blurry - sharp mean brightness of -0.001 to
    # +0.0001, while averaging under 2.2 brightened synthetic pairs by +0.0166 (4/255) on
    # average, which taught the expert to darken real GoPro frames (-0.4 dB on one).
    gamma: float = 1.0

    def __post_init__(self) -> None:
        _check_range("translation_px", self.translation_px)
        _check_range("rotation_deg", self.rotation_deg, 0.0, 45.0)
        _check_range("zoom", self.zoom, 0.0, 0.5)
        _check_range("num_frames", self.num_frames, 2)
        if self.frame_step_px <= 0 or self.gamma <= 0:
            raise ValueError("frame_step_px and gamma must be positive")


@dataclass(frozen=True)
class LocalMotionConfig:
    """`local_motion`: one moving object (a feathered blob) over a static, sharp background."""

    object_area: Range = (0.06, 0.3)  # object area as a fraction of the image
    num_vertices: tuple[int, int] = (5, 12)  # vertices of the random star-shaped outline
    roughness: Range = (0.1, 0.45)  # relative radius jitter of the outline vertices
    feather_px: Range = (0.7, 2.0)  # Gaussian softening of the object's edge (sigma)
    length_px: Range = (6.0, 24.0)  # length of the object's linear motion during the exposure

    def __post_init__(self) -> None:
        _check_range("object_area", self.object_area, 0.0, 1.0)
        _check_range("num_vertices", self.num_vertices, 3)
        _check_range("roughness", self.roughness, 0.0, 0.9)
        _check_range("feather_px", self.feather_px)
        _check_range("length_px", self.length_px)


@dataclass(frozen=True)
class LowLightConfig:
    """`low_light`: short dark exposure with shake and sensor noise (LOLBlur-like); the target
    is the normally exposed sharp photograph."""

    # Linear-light scale of the scene (1 = normal exposure): 3 to 7.6 stops under (was 0.02-0.2).
    # Real low-light shots have a mean luma of 0.024-0.156; 0.005 reaches the darkest (0.02
    # gave >= 0.03), and above 0.125 a typical photograph's mean luma passes the brightest real
    # one, into the 0.15-0.3 band of the dark but normally exposed scenes (`DarkSceneConfig`).
    exposure: Range = (0.005, 0.125)
    # Shake extent up to 24 px (was 12): real low-light images (1120x640) have p90 edge widths of
    # 3.2-11.3 px (median 6.8) against 4.1 px (max 6.7) for 3-12 px synthetic shake.
    shake: ShakeConfig = field(default_factory=lambda: ShakeConfig(length_px=(3.0, 24.0)))
    # Photo-electrons at white (fewer = more shot noise) up to 1e5 (was 8000), Gaussian read
    # noise (linear light) 1e-4-1.5e-3 (was 5e-4-3e-3): every real low-light image here is clean
    # (noise sigma 0.2-1.0 / 255; cameras denoise), the old ranges gave 2.0-6.6 / 255. The noisy
    # end stays (1000 electrons: ~5 / 255), so noise still tells many from dark scenes.
    full_well: Range = (1000.0, 100000.0)
    read_noise: Range = (1e-4, 1.5e-3)

    def __post_init__(self) -> None:
        _check_range("exposure", self.exposure, 0.0, 1.0)
        _check_range("full_well", self.full_well, 1.0)
        _check_range("read_noise", self.read_noise)


@dataclass(frozen=True)
class DefocusConfig:
    """`defocus`: disk (aperture) PSFs whose radius follows a layered synthetic depth map."""

    num_layers: tuple[int, int] = (3, 6)  # depth layers
    # Disk radius of the layer farthest from the focal plane, up to 16 px (was 6): real defocus
    # photographs (CUHK, 640 px) have p90 edge widths of 3.0-14.6 px (median 5.4), synthetic
    # defocus of 1.5-6 px gave a median of 4.9 on photographs whose own median is 3.5; a
    # uniform disk of 12-16 px gives 11.7-12.5.
    max_radius_px: Range = (1.5, 16.0)
    correlation: Range = (0.25, 0.8)  # size of depth structures as a fraction of the image side
    tilt: Range = (0.0, 1.0)  # weight of a planar depth ramp (a ground plane) vs random structure

    def __post_init__(self) -> None:
        _check_range("num_layers", self.num_layers, 2)
        _check_range("max_radius_px", self.max_radius_px)
        _check_range("correlation", self.correlation, 0.01, 4.0)
        _check_range("tilt", self.tilt, 0.0, 1.0)


@dataclass(frozen=True)
class DarkSceneConfig:
    """Dark but normally exposed scenes (dusk, indoor, shadowed photographs): with
    `probability`, a non-low-light sample is first darkened in linear light to a mean sRGB
    luminance drawn from `mean_luminance`, then blurred with its own blur type. The target is
    the darkened sharp photograph: such images keep their exposure and are labelled with their
    blur, so the network learns that dark is not the same as `low_light`."""

    probability: float = 0.0  # chance per non-low-light sample (0 = off, the paper's data)
    mean_luminance: Range = (0.15, 0.3)  # mean sRGB luma (Rec. 709 weights) after darkening

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")
        _check_range("mean_luminance", self.mean_luminance, 0.0, 1.0)


@dataclass(frozen=True)
class SynthConfig:
    """All synthetic blur models; replace a field to change one task's ranges, e.g.
    `SynthConfig(defocus=DefocusConfig(max_radius_px=(1.0, 4.0)))`."""

    defocus: DefocusConfig = field(default_factory=DefocusConfig)
    global_motion: GlobalMotionConfig = field(default_factory=GlobalMotionConfig)
    local_motion: LocalMotionConfig = field(default_factory=LocalMotionConfig)
    synth_global_motion: SynthGlobalMotionConfig = field(default_factory=SynthGlobalMotionConfig)
    low_light: LowLightConfig = field(default_factory=LowLightConfig)
    dark_scene: DarkSceneConfig = field(default_factory=DarkSceneConfig)

    def margin_px(self, task: str, crop_size: int) -> int:
        """Pixels to add around a crop of `crop_size` before blurring so that no part of the
        blur reaches the crop from outside the synthesised region (no wrapped or mirrored
        content in the centre crop)."""
        if task == "global_motion":
            reach = self.global_motion.shake.length_px[1]
        elif task == "low_light":
            reach = self.low_light.shake.length_px[1]
        elif task == "local_motion":
            reach = self.local_motion.length_px[1] / 2 + 3 * self.local_motion.feather_px[1]
        elif task == "defocus":
            reach = self.defocus.max_radius_px[1]
        elif task == "synth_global_motion":
            motion = self.synth_global_motion
            corner = (crop_size / 2 + motion.translation_px[1]) * math.sqrt(2)
            spin = math.radians(motion.rotation_deg[1]) / 2 + motion.zoom[1] / 2
            reach = motion.translation_px[1] + spin * corner
        else:
            raise ValueError(f"unknown task {task!r}")
        return int(math.ceil(reach)) + 2
