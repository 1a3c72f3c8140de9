"""Deblurring videos: frames streamed through the model, one routing decision per shot.

A video is decoded twice and never held in memory (PyAV, the `video` extra: FFmpeg's libraries
with their codecs inside the wheel, no system ffmpeg):

1. **Analysis** (`analyse_video`). Every frame is decoded. A cut is declared where a frame
   differs from the previous one by more than `cut_threshold` in PySceneDetect's ContentDetector
   score (mean absolute difference of hue, saturation and value on 0..255, here on a view at most
   160 pixels wide) and the shot so far holds at least `min_shot_frames` frames. The router looks
   at the first frame of every shot and at every `router_every`-th frame after it, at the view
   size `Deblurrer.restore` would route from (the whole frame up to 2048 x 2048 pixels; at most
   tile x tile pixels when tiling).
2. **Decision** (`shot_routing`). A shot's experts are the top-k of its mean router
   probabilities (or the named `--task`), so every frame of a shot runs the same experts with
   the same weights and the restoration does not flicker from expert to expert.
3. **Restoration** (`restore_video`). The video is decoded again; each frame is restored with
   its shot's weights (`Deblurrer.restore(expert_weights=...)`), converted back to the input's
   chroma layout, bit depth (8 or 10 bits), colour matrix and range, and encoded with H.264
   (libx264 at `crf`) into an MP4 that keeps the input's timestamps: same frame count, same
   frame rate, variable frame rate kept, rotation kept. Audio packets are copied untouched
   (re-encoded as AAC only for a codec MP4 cannot hold). The file is written through
   `demoe.fileio.atomic_write`, so an interrupted run leaves no partial video.

Memory does not grow with the length: one decoded frame, its restoration and the encoder's
look-ahead (libx264 keeps a few dozen frames) are held at a time.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from demoe.fileio import atomic_write
from demoe.inference.batch import (
    BatchOptions,
    BatchSummary,
    InputFile,
    ReportWriter,
    check_target,
    one_line_reason,
    report_failure,
)
from demoe.inference.pipeline import DEFAULT_ROUTER_PIXELS, Deblurrer, entropy_nats
from demoe.nn.moe import top_k_weights

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")
OUTPUT_SUFFIX = ".mp4"
# ISO base media (MP4, MOV) files start with a box of one of these types.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
# ftyp brands of still images in the same box format (HEIF, AVIF): not videos.
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis")
_EBML = b"\x1a\x45\xdf\xa3"  # Matroska and WebM
_CUT_VIEW_WIDTH = 160
# Container tags FFmpeg writes itself; everything else (title, date, location...) is copied.
_OWN_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder", "handler_name", "vendor_id"}


class VideoError(ValueError):
    """A video that cannot be read or written; `reason` is the one-line message for the user."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def _require_av(path: str | Path):
    """PyAV, or a VideoError saying how to install it (video support is the `video` extra)."""
    import importlib.util

    if importlib.util.find_spec("av") is None:
        raise VideoError(path, "video support needs PyAV: pip install 'demoe[video]'")
    import av

    return av


def video_container(path: str | Path) -> str | None:
    """"mp4", "mov", "matroska" or "webm" when the file's first bytes say it is one, else None.

    Recognised by content, never by name: a `clip.bin` holding an MP4 is a video, a `still.mp4`
    holding a PNG is not. HEIF / AVIF images (ISO boxes with an image brand) are not videos.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return None
    if head[:4] == _EBML:
        return "webm" if b"webm" in head else "matroska"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return None
        return "mov" if brand == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return "mov"  # QuickTime files from before the ftyp box
    return None


def is_video_file(path: str | Path) -> bool:
    return video_container(path) is not None


@dataclass(frozen=True)
class VideoOptions:
    """How videos are cut into shots, routed and encoded."""

    crf: int = 18  # libx264 constant rate factor: 0 lossless, 18 visually lossless, 23 ffmpeg's default
    preset: str = "medium"  # libx264 speed / size trade-off (ultrafast ... veryslow)
    cut_threshold: float = 27.0  # ContentDetector score (0..255) above which a frame starts a shot
    min_shot_frames: int = 8  # a cut closer than this to the previous one is ignored (flashes)
    router_every: int = 8  # the router looks at every N-th frame of a shot (and its first)
    mbtree: bool = False  # libx264 macroblock-tree: smaller files, but not byte-reproducible

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if not self.cut_threshold > 0:
            raise ValueError(f"cut_threshold must be > 0, got {self.cut_threshold}")
        if self.min_shot_frames < 1 or self.router_every < 1:
            raise ValueError("min_shot_frames and router_every must be >= 1")


# ---- shots -------------------------------------------------------------------------------------


def cut_view(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 HSV view of an (H, W, 3) RGB frame, at most 160 pixels wide (OpenCV hue 0..179)."""
    if rgb.dtype != np.uint8:
        rgb = (rgb >> 8).astype(np.uint8)  # 16-bit frames: the top byte is enough to see a cut
    height, width = rgb.shape[:2]
    if width > _CUT_VIEW_WIDTH:
        size = (_CUT_VIEW_WIDTH, max(1, round(height * _CUT_VIEW_WIDTH / width)))
        rgb = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)


def content_score(previous: np.ndarray, current: np.ndarray) -> float:
    """PySceneDetect's ContentDetector score of two HSV views: the mean over H, S and V of the
    mean absolute difference (0 = same frame, about 100 for unrelated scenes).

    >>> flat = np.zeros((4, 4, 3), np.uint8)
    >>> content_score(flat, flat), content_score(flat, flat + 30)
    (0.0, 30.0)
    """
    if previous.shape != current.shape:
        raise ValueError(f"views differ in shape: {previous.shape} vs {current.shape}")
    difference = np.abs(previous.astype(np.int16) - current.astype(np.int16))
    return float(difference.reshape(-1, 3).mean(axis=0).mean())


@dataclass
class Shot:
    """Frames [start, start + frames) of a video, and what the router saw in them."""

    start: int  # index of the first frame
    frames: int = 0
    start_time: float | None = None  # seconds, from the frame's timestamp
    probs: list[np.ndarray] = field(default_factory=list)  # (E,) router softmax of the frames looked at

    @property
    def mean_probs(self) -> np.ndarray | None:
        return None if not self.probs else np.mean(self.probs, axis=0)


def shot_routing(
    mean_probs: np.ndarray | None,
    task_names: Sequence[str],
    task: str = "auto",
    top_k: int = 1,
    min_confidence: float | None = None,
    uncertain: str = "hard",
    soft_top_k: int = 2,
) -> tuple[dict[str, float] | None, bool]:
    """A shot's expert weights (task name -> weight) and whether it is low-confidence.

    A named task gets that expert alone; "auto" the top-k of the shot's mean probabilities (the
    top max(k, soft_top_k) for a low-confidence shot under uncertain="soft"), renormalised. None
    when there is nothing to decide (a model without router).
    """
    low = mean_probs is not None and min_confidence is not None and float(mean_probs.max()) < min_confidence
    if task != "auto":
        return {task: 1.0}, low
    if mean_probs is None:
        return None, False
    k = max(top_k, soft_top_k) if low and uncertain == "soft" else top_k
    weights = top_k_weights(torch.from_numpy(np.asarray(mean_probs, np.float64)).float()[None], k)[0]
    order = torch.argsort(weights, descending=True, stable=True)
    return {task_names[int(i)]: float(weights[i]) for i in order if weights[i] > 0}, low


# ---- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """How frames of one video are converted to RGB and back."""

    high_bit_depth: bool  # decoded as 16-bit RGB (10-bit or deeper video)
    output_format: str  # libx264 pixel format of the output
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int

    @property
    def rgb_format(self) -> str:
        return "rgb48le" if self.high_bit_depth else "rgb24"


def _layout(frame) -> _Layout:
    video_format = frame.format
    bits = max(component.bits for component in video_format.components)
    high = bits > 8
    chroma = [component for component in video_format.components if component.is_chroma]
    if not video_format.is_rgb and not chroma and len(video_format.components) <= 2:
        output = "gray"
    else:
        sub_w = bool(chroma) and chroma[0].width < frame.width
        sub_h = bool(chroma) and chroma[0].height < frame.height
        output = "yuv420p" if sub_w and sub_h else "yuv422p" if sub_w else "yuv444p"
        # H.264 subsampled chroma needs even sides; keep every pixel of odd-sized frames.
        if (output == "yuv420p" and (frame.width % 2 or frame.height % 2)) or (output == "yuv422p" and frame.width % 2):
            output = "yuv444p"
    if high:
        output += "10le"
    return _Layout(high, output, int(frame.colorspace), int(frame.color_range), int(frame.color_primaries), int(frame.color_trc))


def _pixels(frame, layout: _Layout) -> np.ndarray:
    """(H, W, 3) uint8 or uint16 RGB of a decoded frame, with the frame's own matrix and range."""
    return frame.to_ndarray(format=layout.rgb_format, src_color_range=layout.color_range)


def _open(path: Path):
    av = _require_av(path)
    try:
        container = av.open(str(path), "r")
    except av.FFmpegError as error:
        raise VideoError(path, f"cannot open the video ({_ffmpeg_reason(error)})") from error
    if not container.streams.video:
        container.close()
        raise VideoError(path, "the file holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _ffmpeg_reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split())


def _decoded_frames(path: Path, container, stream) -> Iterator:
    av = _require_av(path)
    try:
        yield from container.decode(stream)
    except av.FFmpegError as error:
        raise VideoError(path, f"corrupt video data ({_ffmpeg_reason(error)})") from error


def _frame_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


@dataclass
class VideoAnalysis:
    """What the first pass found: frame count, size, rate, shots and their router looks."""

    frames: int
    width: int
    height: int
    fps: Fraction
    rotation: int
    shots: list[Shot]
    layout: _Layout  # pixel format, colour matrix and range of the frames
    start_time: float  # seconds, timestamp of the first frame
    constant_rate: bool  # every frame within one tick of start_time + index / fps

    def output_timing(self, time_base: Fraction) -> tuple[Fraction, Callable[[int, int | None], int]]:
        """The output's time base and frame index, input pts -> output pts.

        A constant-rate video is laid on an exact grid of 1/fps (in ticks of about 1/90000 s),
        so its rate survives inputs whose time base cannot express it (29.97 fps in
        milliseconds); other videos keep their own timestamps.
        """
        if self.constant_rate:
            ticks_per_second = self.fps.numerator * max(1, round(90000 / self.fps.numerator))
            grid = Fraction(1, ticks_per_second)
            step = int(self.fps.denominator * ticks_per_second / self.fps.numerator)
            start = round(Fraction(self.start_time).limit_denominator(10**9) / grid)
            return grid, lambda index, pts: start + index * step
        step = 1 / (self.fps * time_base)
        return time_base, lambda index, pts: pts if pts is not None else round(index * step)


def analyse_video(
    path: str | Path,
    deblurrer: Deblurrer | None,
    options: VideoOptions = VideoOptions(),
    router_max_pixels: int = DEFAULT_ROUTER_PIXELS,
    max_pixels: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> VideoAnalysis:
    """Decode every frame once: find the cuts and run the router on the frames it looks at.

    deblurrer None (or a model without router): cuts only.
    progress(frames) is called after every frame.
    """
    path = Path(path)
    container, stream = _open(path)
    router = deblurrer is not None and deblurrer.model.router is not None
    shots: list[Shot] = []
    previous_view = None
    layout = width = height = None
    rotation = 0
    count = 0
    fps = _frame_rate(stream)  # read while the container is open (its memory is freed on close)
    tick = float(stream.time_base) if stream.time_base else 0.0
    start_time, drift = 0.0, 0.0
    try:
        for frame in _decoded_frames(path, container, stream):
            if layout is None:
                width, height = frame.width, frame.height
                if max_pixels is not None and width * height > max_pixels:
                    raise VideoError(
                        path, f"frames of {width}x{height} exceed the limit of {max_pixels:,} pixels (--max-pixels)"
                    )
                layout = _layout(frame)
                rotation = int(frame.rotation or 0)
            elif (frame.width, frame.height) != (width, height):
                raise VideoError(path, f"frame {count} is {frame.width}x{frame.height}, the first was {width}x{height}")
            if frame.time is not None:
                if count == 0:
                    start_time = float(frame.time)
                drift = max(drift, abs(float(frame.time) - start_time - count / fps))
            pixels = _pixels(frame, layout)
            view = cut_view(pixels)
            new_shot = previous_view is None or (
                shots[-1].frames >= options.min_shot_frames
                and content_score(previous_view, view) > options.cut_threshold
            )
            if new_shot:
                shots.append(Shot(start=count, start_time=None if frame.time is None else float(frame.time)))
            shot = shots[-1]
            if router and shot.frames % options.router_every == 0:
                probs = deblurrer.classify(pixels, router_max_pixels=router_max_pixels)
                shot.probs.append(np.array(list(probs.values()), np.float64))
            shot.frames += 1
            previous_view = view
            count += 1
            if progress is not None:
                progress(1)
    finally:
        container.close()
    if count == 0:
        raise VideoError(path, "the video stream holds no frames")
    constant = drift <= tick + 1e-9
    return VideoAnalysis(count, width, height, fps, rotation, shots, layout, start_time, constant)


# ---- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoResult:
    analysis: VideoAnalysis
    routing: list[tuple[dict[str, float] | None, bool]]  # per shot: expert weights, low confidence
    audio: list[str]  # per audio stream: "copied aac" or "re-encoded vorbis -> aac"
    dropped: list[str]  # streams not carried over (subtitles, data), as "subtitle mov_text"
    seconds: float


def _can_copy_into_mp4(av, stream) -> bool:
    """Whether MP4 holds this stream's codec: a header written into memory tells."""
    probe = av.open(io.BytesIO(), "w", format="mp4")
    try:
        probe.add_stream_from_template(stream)
        probe.start_encoding()
    except (av.FFmpegError, ValueError):
        return False
    finally:
        try:
            probe.close()
        except av.FFmpegError:
            pass  # closing a probe that never wrote its header
    return True


def restore_video(
    path: str | Path,
    target: str | Path,
    deblurrer: Deblurrer,
    analysis: VideoAnalysis,
    options: BatchOptions = BatchOptions(),
    video: VideoOptions = VideoOptions(),
    progress: Callable[[int], None] | None = None,
) -> VideoResult:
    """Restore every frame of `path` with its shot's routing into the MP4 `target` (atomically)."""
    path, target = Path(path), Path(target)
    av = _require_av(path)
    start = time.perf_counter()
    routing = [
        shot_routing(
            shot.mean_probs,
            deblurrer.task_names,
            options.task,
            options.top_k if options.top_k is not None else deblurrer.model.config.top_k,
            options.min_confidence,
            options.uncertain,
        )
        for shot in analysis.shots
    ]
    shot_of_frame = np.repeat(np.arange(len(analysis.shots)), [shot.frames for shot in analysis.shots])
    audio_notes: list[str] = []
    dropped: list[str] = []

    def write(temporary: str) -> None:
        container, stream = _open(path)
        output = av.open(temporary, "w", format="mp4", options={"movflags": "+faststart"})
        try:
            audio_notes.clear()
            dropped.clear()
            _encode(av, path, container, stream, output, deblurrer, analysis, routing, shot_of_frame, options, video, audio_notes, dropped, progress)
        finally:
            container.close()
            output.close()

    try:
        atomic_write(target, write)
    except av.FFmpegError as error:
        raise VideoError(path, f"cannot write {target} ({_ffmpeg_reason(error)})") from error
    return VideoResult(analysis, routing, list(audio_notes), list(dropped), time.perf_counter() - start)


def _encode(
    av, path, container, stream, output, deblurrer, analysis, routing, shot_of_frame, options, video, audio_notes, dropped, progress
) -> None:
    video_out, time_base, output_pts = _add_video_stream(output, stream, analysis, video)
    for key, value in container.metadata.items():
        if key.lower() not in _OWN_TAGS:
            output.metadata[key] = value
    audio_map = _add_audio_streams(av, container, stream, output, audio_notes, dropped)
    audio_streams = [s for s in container.streams if s.index in audio_map]
    frames = _FrameEncoder(
        av, path, output, video_out, deblurrer, analysis, routing, shot_of_frame, options, time_base, output_pts, progress
    )
    try:
        for packet in container.demux(stream, *audio_streams):
            if packet.stream is stream:
                for frame in packet.decode():
                    frames.encode(frame)
            else:
                target, transcode = audio_map[packet.stream.index]
                if transcode:
                    for samples in packet.decode():
                        samples.pts = None  # the AAC encoder numbers its own samples
                        output.mux(target.encode(samples))
                elif packet.dts is not None:  # None: the end-of-stream marker
                    packet.stream = target
                    output.mux(packet)
        output.mux(video_out.encode(None))
        for target, transcode in audio_map.values():
            if transcode:
                output.mux(target.encode(None))
    except av.FFmpegError as error:
        raise VideoError(path, f"corrupt video data or encoder error ({_ffmpeg_reason(error)})") from error
    if frames.index != analysis.frames:
        raise VideoError(path, f"the second decoding gave {frames.index} frames, the first {analysis.frames}")


def _add_video_stream(output, stream, analysis: VideoAnalysis, video: VideoOptions):
    """The H.264 output stream, with the input's colour layout, timing, aspect, rotation and
    language; returns (stream, its time base, the output timestamp of frame i)."""
    layout = analysis.layout
    video_out = output.add_stream("libx264", rate=analysis.fps)
    video_out.width, video_out.height = analysis.width, analysis.height
    video_out.pix_fmt = layout.output_format
    context = video_out.codec_context
    context.colorspace, context.color_range = layout.colorspace, layout.color_range
    context.color_primaries, context.color_trc = layout.color_primaries, layout.color_trc
    # Set on the encoder too (PyAV leaves its time base unset unless asked).
    time_base, output_pts = analysis.output_timing(stream.time_base)
    video_out.time_base = video_out.codec_context.time_base = time_base
    video_out.codec_context.framerate = analysis.fps  # libx264 derives its GOP settings from it
    video_out.codec_context.thread_count = max(1, torch.get_num_threads())
    # mbtree off by default: with it, the libx264 of PyAV's wheels reads uninitialised memory and
    # the same frames encode to different streams in different processes (docs/deblur.md);
    # without it the output is byte-identical whatever process or rank made it.
    video_out.options = {"crf": str(video.crf), "preset": video.preset, "x264-params": f"mbtree={int(video.mbtree)}"}
    if stream.sample_aspect_ratio:
        video_out.codec_context.sample_aspect_ratio = stream.sample_aspect_ratio
    if analysis.rotation:
        video_out.set_display_rotation(analysis.rotation)
    if stream.language:
        video_out.metadata["language"] = stream.language
    return video_out, time_base, output_pts


def _add_audio_streams(av, container, stream, output, audio_notes: list[str], dropped: list[str]) -> dict:
    """An output stream per audio stream (copied when MP4 can hold it, else re-encoded to AAC),
    noted in audio_notes; other streams (subtitles, data) are noted in dropped. Returns input
    stream index -> (output stream, transcode)."""
    audio_map = {}
    for source in container.streams:
        if source is stream:
            continue
        if source.type == "audio":
            copy = _can_copy_into_mp4(av, source)
            if copy:
                target = output.add_stream_from_template(source)
                audio_notes.append(f"copied {source.codec_context.name}")
            else:
                target = output.add_stream("aac", rate=source.rate, layout=source.layout.name)
                audio_notes.append(f"re-encoded {source.codec_context.name} -> aac")
            if source.language:
                target.metadata["language"] = source.language
            audio_map[source.index] = (target, not copy)
        else:
            dropped.append(f"{source.type} {source.codec_context.name if source.codec_context else '?'}")
    return audio_map


class _FrameEncoder:
    """Restores decoded frames one by one with their shot's routing and muxes them, with
    strictly increasing timestamps; `index` counts the frames encoded."""

    def __init__(
        self, av, path, output, video_out, deblurrer, analysis, routing, shot_of_frame, options, time_base, output_pts,
        progress,
    ) -> None:
        self.av, self.path, self.output, self.video_out = av, path, output, video_out
        self.deblurrer, self.analysis, self.routing, self.shot_of_frame = deblurrer, analysis, routing, shot_of_frame
        self.options, self.time_base, self.output_pts, self.progress = options, time_base, output_pts, progress
        self.frame_ticks = max(1, round(1 / (analysis.fps * time_base)))
        self.index = 0
        self.last_pts = None

    def encode(self, frame) -> None:
        analysis, options, layout = self.analysis, self.options, self.analysis.layout
        if self.index >= analysis.frames:
            raise VideoError(self.path, f"the second decoding gave more frames than the first ({analysis.frames})")
        weights, _ = self.routing[self.shot_of_frame[self.index]]
        result = self.deblurrer.restore(
            _pixels(frame, layout),
            task="auto" if weights is not None else options.task,
            top_k=options.top_k,
            tile=options.tile,
            tile_overlap=options.tile_overlap,
            expert_weights=weights,
            max_memory=options.max_memory,
            tlc=options.tlc,
        )
        restored = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(result.image), format=layout.rgb_format)
        restored = restored.reformat(
            format=layout.output_format, dst_colorspace=layout.colorspace, dst_color_range=layout.color_range, threads=1
        )
        pts = self.output_pts(self.index, frame.pts)
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1  # encoders need strictly increasing timestamps
        restored.pts, restored.time_base, restored.duration = pts, self.time_base, self.frame_ticks
        self.last_pts = pts
        self.output.mux(self.video_out.encode(restored))
        self.index += 1
        if self.progress is not None:
            self.progress(1)


# ---- many videos -------------------------------------------------------------------------------


def video_output_path(item: InputFile, out_dir: Path, suffix: str) -> Path:
    """OUT_DIR / relative folder / (stem + suffix + .mp4)."""
    return out_dir / item.relative.parent / f"{item.relative.stem}{suffix}{OUTPUT_SUFFIX}"


def video_record(name: str, target: Path, result: VideoResult, task_names: Sequence[str], flag_low: bool) -> dict:
    """The report line of one restored video (see docs/deblur.md)."""
    analysis = result.analysis
    shots = []
    for shot, (weights, low) in zip(analysis.shots, result.routing):
        probs = shot.mean_probs
        entry = {
            "start_frame": shot.start,
            "frames": shot.frames,
            "start_time": None if shot.start_time is None else round(shot.start_time, 6),
            "router_frames": len(shot.probs),
            "task_probs": None if probs is None else dict(zip(task_names, map(float, probs))),
            "entropy": None if probs is None else entropy_nats(probs),
            "experts_used": [] if weights is None else list(weights),
            "expert_weights": weights or {},
        }
        if flag_low:
            entry["low_confidence"] = bool(low)
        shots.append(entry)
    return {
        "input": name,
        "output": str(target),
        "kind": "video",
        "frames": analysis.frames,
        "width": analysis.width,
        "height": analysis.height,
        "fps": float(analysis.fps),
        "audio": result.audio,
        "dropped_streams": result.dropped,
        "shots": shots,
        "seconds": round(result.seconds, 4),
    }


def run_videos(
    videos: Sequence[InputFile],
    out_dir: Path,
    deblurrer: Deblurrer,
    options: BatchOptions,
    video: VideoOptions = VideoOptions(),
    report: ReportWriter | None = None,
    protected: set[Path] | None = None,
    quiet: bool = False,
    say: Callable[[str], None] = print,
) -> BatchSummary:
    """Restore every video into out_dir as <stem><suffix>.mp4; a broken video fails alone.

    protected: resolved paths no output may take (all inputs of the run; default the videos).
    Progress is shown in frames, one bar per pass.
    """
    start = time.perf_counter()
    report = report or ReportWriter(None)
    summary = BatchSummary()
    protected = protected if protected is not None else {item.path.resolve() for item in videos}
    claimed: dict[Path, str] = {}
    router_pixels = options.tile * options.tile if options.tile else DEFAULT_ROUTER_PIXELS
    for item in videos:
        name = str(item.path)
        try:
            target = video_output_path(item, out_dir, options.suffix)
            check_target(target, protected, claimed)
            if options.skip_existing and target.is_file() and target.stat().st_size > 0:
                summary.skipped += 1
                claimed[target.resolve()] = name
                report.write({"input": name, "output": str(target), "kind": "video", "skipped": True})
                continue
            with _frame_bar(quiet, f"{item.path.name}: shots") as bar:
                analysis = analyse_video(item.path, deblurrer, video, router_pixels, options.max_pixels, bar.update)
            with _frame_bar(quiet, f"{item.path.name}: deblur", analysis.frames) as bar:
                result = restore_video(item.path, target, deblurrer, analysis, options, video, bar.update)
            claimed[target.resolve()] = name
        except VideoError as error:
            report_failure(summary, report, say, name, error.reason)
            continue
        except (ValueError, OSError, RuntimeError, MemoryError) as error:
            report_failure(summary, report, say, name, one_line_reason(error))
            continue
        summary.done += 1
        record = video_record(name, target, result, deblurrer.task_names, options.min_confidence is not None)
        report.write(record)
        low = [shot for shot in record["shots"] if shot.get("low_confidence")]
        if low:
            summary.low_confidence += 1
            say(f"low confidence: {name}: {len(low)} of {len(record['shots'])} shots below {options.min_confidence:.2f}")
    summary.seconds = time.perf_counter() - start
    return summary


def _frame_bar(quiet: bool, description: str, total: int | None = None) -> tqdm:
    return tqdm(total=total, desc=description, unit="frame", disable=True if quiet else None, dynamic_ncols=True, leave=False)


def classify_video(
    path: str | Path,
    deblurrer: Deblurrer,
    video: VideoOptions = VideoOptions(),
    max_pixels: int | None = None,
) -> list[dict]:
    """The router's verdict per shot: start_frame, frames, start_time, task_probs, top, entropy."""
    analysis = analyse_video(path, deblurrer, video, DEFAULT_ROUTER_PIXELS, max_pixels)
    shots = []
    for shot in analysis.shots:
        probs = dict(zip(deblurrer.task_names, map(float, shot.mean_probs)))
        shots.append(
            {
                "start_frame": shot.start,
                "frames": shot.frames,
                "start_time": shot.start_time,
                "task_probs": probs,
                "top": max(probs, key=probs.get),
                "entropy": entropy_nats(shot.mean_probs),
            }
        )
    return shots
