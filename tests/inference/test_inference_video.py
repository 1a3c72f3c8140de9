"""Videos through `demoe deblur` / `demoe classify` and `demoe.inference.video`: frames, rate,
size and audio kept, one routing decision per shot, nothing partial left behind."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from demoe.cli import main
from demoe.inference import Deblurrer
from demoe.inference.batch import BatchOptions
from demoe.inference.video import (
    VideoOptions,
    analyse_video,
    content_score,
    cut_view,
    restore_video,
    shot_routing,
    video_container,
)

from inference_testing import file_hash, photo, psnr, quantized, tiny_model
from video_testing import AUDIO_RATE, read_clip, scene_frames, write_clip


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny frames: one thread is many times faster


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights") / "tiny"
    tiny_model().save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def deblurrer():
    return Deblurrer(tiny_model(), device="cpu")


def _deblur(model_dir, *args) -> int:
    return main(["deblur", *map(str, args), "--device", "cpu", *(["--weights", str(model_dir)] if model_dir else [])])


def _report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _two_scenes(first: int = 8, second: int = 8) -> list[np.ndarray]:
    """A bright scene, then a cut to an underexposed one (mean luma 0.035, as real low-light shots
    are: the bundled router calls it low light; a dark but normally exposed one it does not)."""
    return scene_frames(first, 32, 48, seed=0) + scene_frames(second, 32, 48, seed=5, brightness=0.06)


# ---- recognised by content -------------------------------------------------------------------


def test_videos_are_recognised_by_content_not_name(tmp_path):
    frames = scene_frames(3, 16, 16, seed=0)
    write_clip(tmp_path / "a.mp4", frames, audio=False)
    write_clip(tmp_path / "b.mkv", frames, audio=False, container_format="matroska")
    write_clip(tmp_path / "c.webm", frames, audio=False, codec="libvpx-vp9", container_format="webm")
    write_clip(tmp_path / "d.mov", frames, audio=False, container_format="mov")
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "a.mp4").read_bytes())
    Image.fromarray(frames[0]).save(tmp_path / "still.png")
    (tmp_path / "still.mp4").write_bytes((tmp_path / "still.png").read_bytes())
    (tmp_path / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    found = {name: video_container(tmp_path / name) for name in
             ["a.mp4", "b.mkv", "c.webm", "d.mov", "renamed.bin", "still.mp4", "photo.heic"]}
    assert found == {"a.mp4": "mp4", "b.mkv": "matroska", "c.webm": "webm", "d.mov": "mov",
                     "renamed.bin": "mp4", "still.mp4": None, "photo.heic": None}


def test_content_score_sees_a_cut_and_not_a_pan():
    frames = _two_scenes(3, 3)
    views = [cut_view(frame) for frame in frames]
    within = [content_score(views[i], views[i + 1]) for i in (0, 1, 3, 4)]
    across = content_score(views[2], views[3])
    assert max(within) < VideoOptions.cut_threshold < across


def test_shot_routing_is_top_k_of_the_mean():
    names = ("a", "b", "c")
    assert shot_routing(np.array([0.2, 0.5, 0.3]), names) == ({"b": 1.0}, False)
    weights, low = shot_routing(np.array([0.2, 0.5, 0.3]), names, top_k=2)
    assert list(weights) == ["b", "c"] and weights["b"] == pytest.approx(0.625) and not low
    assert shot_routing(np.array([0.2, 0.5, 0.3]), names, task="a") == ({"a": 1.0}, False)
    weights, low = shot_routing(np.array([0.2, 0.5, 0.3]), names, min_confidence=0.6, uncertain="soft")
    assert low and list(weights) == ["b", "c"]  # an unsure shot gets the wider mixture


# ---- the command --------------------------------------------------------------------------------


def test_a_short_clip_keeps_frames_size_rate_and_audio(tmp_path, model_dir, capsys):
    frames = scene_frames(12, 32, 48, seed=1)
    (tmp_path / "in").mkdir()
    clip = write_clip(tmp_path / "in" / "clip.mp4", frames, fps=Fraction(25))
    before = file_hash(clip)
    status = _deblur(model_dir, clip, "-o", tmp_path / "out", "--report", tmp_path / "r.jsonl")
    assert status == 0, capsys.readouterr().err
    assert file_hash(clip) == before  # the input is untouched
    source, restored = read_clip(clip), read_clip(tmp_path / "out" / "clip_deblurred.mp4")
    assert len(restored["frames"]) == len(source["frames"]) == 12
    assert restored["size"] == source["size"] == (32, 48)
    assert restored["fps"] == source["fps"] == 25
    assert restored["audio"] == source["audio"] and source["audio"][0][0] == "aac"
    assert source["audio"][0][1] >= AUDIO_RATE * 12 / 25  # the whole tone, copied packet for packet
    assert not np.array_equal(restored["frames"][5], source["frames"][5])  # it was restored
    [record] = _report(tmp_path / "r.jsonl")
    assert record["kind"] == "video" and record["frames"] == 12 and record["fps"] == 25.0
    assert record["audio"] == ["copied aac"] and len(record["shots"]) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_deblurred.mp4"]  # no temporaries


def test_a_cut_in_the_middle_gives_two_shots_and_two_decisions(tmp_path, capsys):
    """The bundled router: the bright shot and the dark shot get different experts, every frame
    of a shot runs its shot's experts, and the decision is the top-1 of the shot's mean."""
    frames = _two_scenes(8, 8)
    clip = write_clip(tmp_path / "cut.mkv", frames, container_format="matroska", pixel_format="yuv444p")
    report = tmp_path / "r.jsonl"
    status = _deblur(None, clip, "-o", tmp_path / "out", "--report", report, "--crf", "0")
    assert status == 0, capsys.readouterr().err
    [record] = _report(report)
    shots = record["shots"]
    assert [(shot["start_frame"], shot["frames"]) for shot in shots] == [(0, 8), (8, 8)]
    assert shots[1]["start_time"] == pytest.approx(0.8)
    decisions = [shot["experts_used"] for shot in shots]
    assert decisions[0] != decisions[1] and decisions[1] == ["low_light"]

    bundled = Deblurrer(None, device="cpu")
    decoded = read_clip(clip)["frames"]
    output = read_clip(tmp_path / "out" / "cut_deblurred.mp4")["frames"]
    assert len(output) == 16
    for shot in shots:
        looked = decoded[shot["start_frame"] : shot["start_frame"] + shot["frames"] : VideoOptions.router_every]
        mean = np.mean([list(bundled.classify(frame).values()) for frame in looked], axis=0)
        assert list(shot["task_probs"].values()) == pytest.approx(mean.tolist(), abs=1e-6)
        assert shot["experts_used"] == [bundled.task_names[int(np.argmax(mean))]]
    for index in (0, 7, 8, 15):
        own, other = (shots[0], shots[1]) if index < 8 else (shots[1], shots[0])
        expected = bundled.restore(decoded[index], expert_weights=own["expert_weights"]).image
        wrong = bundled.restore(decoded[index], expert_weights=other["expert_weights"]).image
        # lossless H.264 in 4:4:4: only the RGB <-> YUV rounding separates output and restoration
        right, mistaken = psnr(output[index], expected, 255), psnr(output[index], wrong, 255)
        assert right > 45 and right > mistaken + 3, (index, right, mistaken)


def test_task_top_k_and_tile_apply_to_every_shot(tmp_path, model_dir, capsys):
    clip = write_clip(tmp_path / "clip.mp4", _two_scenes(8, 8), audio=False)
    report = tmp_path / "r.jsonl"
    assert _deblur(model_dir, clip, "-o", tmp_path / "a", "--task", "defocus", "--tile", "16",
                   "--tile-overlap", "4", "--report", report) == 0, capsys.readouterr().err
    assert [shot["experts_used"] for shot in _report(report)[0]["shots"]] == [["defocus"], ["defocus"]]
    assert _deblur(model_dir, clip, "-o", tmp_path / "b", "--top-k", "2", "--report", report) == 0
    for shot in _report(report)[0]["shots"]:
        assert len(shot["experts_used"]) == 2 and sum(shot["expert_weights"].values()) == pytest.approx(1.0)
    tiled = read_clip(tmp_path / "a" / "clip_deblurred.mp4")["frames"]
    whole = read_clip(tmp_path / "b" / "clip_deblurred.mp4")["frames"]
    assert len(tiled) == len(whole) == 16 and not np.array_equal(tiled[3], whole[3])


def test_skip_existing_and_a_broken_video_in_a_batch(tmp_path, model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_clip(folder / "good.webm", scene_frames(4, 16, 16, seed=2), codec="libvpx-vp9",
               audio_codec="libopus", container_format="webm")
    (folder / "cut.mp4").write_bytes((folder / "good.webm").read_bytes()[:300])  # truncated
    Image.fromarray(quantized(photo(16, 16), np.uint8)).save(folder / "still.png")
    report = tmp_path / "r.jsonl"
    assert _deblur(model_dir, folder, "-o", tmp_path / "out", "--report", report) == 1
    err = capsys.readouterr().err
    assert "cut.mp4" in err and "1 failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_deblurred.mp4", "still_deblurred.png"]
    records = {Path(r["input"]).name: r for r in _report(report)}
    assert "error" in records["cut.mp4"] and records["good.webm"]["audio"] == ["copied opus"]
    written = file_hash(tmp_path / "out" / "good_deblurred.mp4")
    assert _deblur(model_dir, folder / "good.webm", "-o", tmp_path / "out", "--skip-existing", "--report", report) == 0
    assert _report(report) == [{"input": str(folder / "good.webm"), "output": str(tmp_path / "out" / "good_deblurred.mp4"),
                                "kind": "video", "skipped": True}]
    assert file_hash(tmp_path / "out" / "good_deblurred.mp4") == written


def test_classify_a_video_per_shot(tmp_path, capsys):
    clip = write_clip(tmp_path / "cut.mp4", _two_scenes(8, 8))
    assert main(["classify", str(clip), "--json", "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "video" and [s["start_frame"] for s in record["shots"]] == [0, 8]
    assert record["shots"][1]["top"] == "low_light"


# ---- the library ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, settings, size, expected_format",
    [
        ("a.mkv", dict(container_format="matroska"), (32, 48), "yuv420p"),
        ("b.mov", dict(container_format="mov", pixel_format="yuv422p"), (32, 48), "yuv422p"),
        ("c.mp4", dict(pixel_format="yuv420p10le"), (32, 48), "yuv420p10le"),
        ("d.webm", dict(codec="libvpx-vp9", audio=False, container_format="webm"), (31, 45), "yuv444p"),
        ("e.mp4", dict(pixel_format="yuvj420p", rotation=90, audio=False), (32, 48), "yuvj420p"),
    ],
)
def test_layouts_rates_and_rotation_are_kept(tmp_path, deblurrer, name, settings, size, expected_format):
    clip = write_clip(tmp_path / name, scene_frames(5, *size, seed=3), fps=Fraction(30000, 1001), **settings)
    analysis = analyse_video(clip, deblurrer)
    restore_video(clip, tmp_path / "out.mp4", deblurrer, analysis)
    with av.open(str(clip)) as source, av.open(str(tmp_path / "out.mp4")) as output:
        first_in = next(source.decode(video=0))
        first_out = next(output.decode(video=0))
        assert output.streams.video[0].codec_context.pix_fmt == expected_format  # odd sizes: 4:4:4
        assert (first_out.width, first_out.height) == (first_in.width, first_in.height) == size[::-1]
        assert output.streams.video[0].average_rate == Fraction(30000, 1001)
        assert first_out.rotation == first_in.rotation == settings.get("rotation", 0)
        assert first_out.color_range == first_in.color_range or first_in.color_range == 1  # MPEG = unspecified
    assert len(read_clip(tmp_path / "out.mp4")["frames"]) == 5


def test_variable_frame_rate_timestamps_are_kept(tmp_path, deblurrer):
    output = av.open(str(tmp_path / "vfr.mkv"), "w")
    stream = output.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
    stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
    for milliseconds, pixels in zip([0, 40, 80, 200, 240, 400, 433], scene_frames(7, 32, 48, seed=4)):
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts, frame.time_base = milliseconds, Fraction(1, 1000)
        output.mux(stream.encode(frame))
    output.mux(stream.encode(None))
    output.close()
    restore_video(tmp_path / "vfr.mkv", tmp_path / "out.mp4", deblurrer, analyse_video(tmp_path / "vfr.mkv", deblurrer))

    def times(path):
        with av.open(str(path)) as container:
            return [round(float(frame.time), 4) for frame in container.decode(video=0)]

    assert times(tmp_path / "out.mp4") == times(tmp_path / "vfr.mkv") == [0.0, 0.04, 0.08, 0.2, 0.24, 0.4, 0.433]


def test_an_interrupted_restoration_leaves_no_partial_video(tmp_path, deblurrer):
    clip = write_clip(tmp_path / "clip.mp4", scene_frames(10, 32, 48, seed=5))
    analysis = analyse_video(clip, deblurrer)
    (tmp_path / "out").mkdir()
    seen = []

    def interrupt_after_three(frames: int) -> None:
        seen.append(frames)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore_video(clip, tmp_path / "out" / "clip_deblurred.mp4", deblurrer, analysis, progress=interrupt_after_three)
    assert list((tmp_path / "out").iterdir()) == []  # neither the video nor its temporary file


def test_the_same_video_encodes_to_the_same_bytes(tmp_path, deblurrer):
    """Byte-identical output whatever ran before in the process (what sharding relies on)."""
    clip = write_clip(tmp_path / "clip.mp4", scene_frames(10, 32, 48, seed=6))
    analysis = analyse_video(clip, deblurrer)
    restore_video(clip, tmp_path / "first.mp4", deblurrer, analysis)
    deblurrer.restore(quantized(photo(64, 64), np.uint8))  # other work in between
    restore_video(clip, tmp_path / "second.mp4", deblurrer, analysis, BatchOptions(), VideoOptions())
    assert file_hash(tmp_path / "first.mp4") == file_hash(tmp_path / "second.mp4")


def test_memory_does_not_grow_with_the_length(tmp_path, deblurrer):
    """Python-side allocations (numpy frames) of a 40-frame clip peak as high as a 10-frame one."""
    import tracemalloc

    peaks = []
    for count in (10, 40):
        clip = write_clip(tmp_path / f"c{count}.mp4", scene_frames(count, 64, 64, seed=7), audio=False)
        tracemalloc.start()
        analysis = analyse_video(clip, deblurrer)
        restore_video(clip, tmp_path / f"o{count}.mp4", deblurrer, analysis)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    frame_bytes = 64 * 64 * 3
    assert peaks[1] < peaks[0] + 10 * frame_bytes, peaks  # 30 more frames held would add 30 frames


def test_mbtree_gives_a_valid_video_too(tmp_path, model_dir, capsys):
    clip = write_clip(tmp_path / "clip.mp4", scene_frames(12, 32, 48, seed=8), audio=False)
    assert _deblur(model_dir, clip, "-o", tmp_path / "out", "--mbtree", "--crf", "23") == 0, capsys.readouterr().err
    restored = read_clip(tmp_path / "out" / "clip_deblurred.mp4")
    assert len(restored["frames"]) == 12 and restored["fps"] == 10
