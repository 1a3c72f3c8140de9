"""Short generated clips for the video tests: a few small frames, optionally a cut and audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from inference_testing import photo, quantized

AUDIO_RATE = 16000


def scene_frames(count: int, height: int, width: int, seed: int, brightness: float = 1.0) -> list[np.ndarray]:
    """`count` (H, W, 3) uint8 frames of one scene, panning slowly (small frame differences)."""
    base = photo(height, width + count, 3, seed=seed) * brightness
    return [quantized(np.clip(base[:, i : i + width], 0, 1), np.uint8) for i in range(count)]


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    fps: int | Fraction = 10,
    audio: bool = True,
    codec: str = "libx264",
    audio_codec: str = "aac",
    pixel_format: str = "yuv420p",
    container_format: str | None = None,
    rotation: int = 0,
    crf: int = 0,
) -> Path:
    """Encode frames (and a 440 Hz mono tone as long as the video) into `path`."""
    output = av.open(str(path), "w", format=container_format)
    video = output.add_stream(codec, rate=fps)
    video.height, video.width = frames[0].shape[:2]
    video.pix_fmt = pixel_format
    if codec == "libx264":
        video.options = {"crf": str(crf)}
    if rotation:
        video.set_display_rotation(rotation)
    sound = output.add_stream(audio_codec, rate=AUDIO_RATE, layout="mono") if audio else None
    for pixels in frames:
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24" if pixels.dtype == np.uint8 else "rgb48le")
        output.mux(video.encode(frame))
    output.mux(video.encode(None))
    if sound is not None:
        samples = round(AUDIO_RATE * len(frames) / float(fps))
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / AUDIO_RATE)).astype(np.float32)
        chunk = sound.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=sound.codec_context.format.name, layout="mono", rate=AUDIO_RATE)
        for begin in range(0, samples, chunk):
            piece = av.AudioFrame.from_ndarray(tone[None, begin : begin + chunk], format="flt", layout="mono")
            piece.sample_rate = AUDIO_RATE
            piece.pts = begin
            for resampled in resampler.resample(piece):
                output.mux(sound.encode(resampled))
        output.mux(sound.encode(None))
    output.close()
    return path


def read_clip(path: Path) -> dict:
    """Frames (RGB uint8), frame rate, size, and the audio streams (codec, samples) of a video."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        rate = stream.average_rate
    audio = []
    with av.open(str(path)) as container:
        for stream in container.streams.audio:
            samples = sum(frame.samples for frame in container.decode(stream))
            audio.append((stream.codec_context.name, samples))
    return {"frames": frames, "fps": rate, "size": frames[0].shape[:2] if frames else None, "audio": audio}
