"""Parameter ranges of the synthetic blur models, as typed frozen dataclasses.

Every `(low, high)` pair is a range that one value is drawn from uniformly per sample.
Lengths and radii are in pixels of the image handed to `synthesize`, so they assume photographs
of a few hundred pixels per side (like BSD, Urban100, Kodak); downscale larger photographs first.
Intensities are in linear light, relative to white = 1.
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

    shake: ShakeConfig = field(default_factory=ShakeConfig)
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

    translation_px: Range = (5.0, 22.0)  # extent of the smooth camera path over the exposure
    rotation_deg: Range = (0.0, 1.0)  # in-plane rotation over the exposure (either direction)
    zoom: Range = (0.0, 0.02)  # relative scale change over the exposure (in or out)
    frame_step_px: float = 1.0  # largest motion between two virtual frames (sets the frame count)
    num_frames: tuple[int, int] = (7, 41)  # bounds of the virtual frame count (GoPro averaged 7-13)
    gamma: float = 2.2  # camera response approximated as a gamma curve, as GoPro did

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

    exposure: Range = (0.02, 0.2)  # linear-light scale of the scene (1 = normal exposure)
    shake: ShakeConfig = field(default_factory=lambda: ShakeConfig(length_px=(3.0, 12.0)))
    full_well: Range = (1000.0, 8000.0)  # photo-electrons at white: fewer = more shot noise
    read_noise: Range = (5e-4, 3e-3)  # Gaussian read-noise standard deviation (linear light)

    def __post_init__(self) -> None:
        _check_range("exposure", self.exposure, 0.0, 1.0)
        _check_range("full_well", self.full_well, 1.0)
        _check_range("read_noise", self.read_noise)


@dataclass(frozen=True)
class DefocusConfig:
    """`defocus`: disk (aperture) PSFs whose radius follows a layered synthetic depth map."""

    num_layers: tuple[int, int] = (3, 6)  # depth layers
    max_radius_px: Range = (1.5, 6.0)  # disk radius of the layer farthest from the focal plane
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
