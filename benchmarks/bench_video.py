"""Video and many-process deblurring, measured (issue 18); numbers go into docs/deblur.md by hand.

Run on demand, not in CI (needs the `video` extra):

    PYTHONPATH=src python benchmarks/bench_video.py --out benchmarks/results/video.json

Sections:
  video     a 2-shot clip (two bundled photos panned, 640x360, 24 fps, AAC audio) through
            `demoe deblur` with the bundled weights: seconds per frame of the analysis pass and
            of the restoration pass, the shots found and their experts
  mbtree    the cost of libx264 without macroblock-tree rate control (off in demoe for
            byte-identical outputs): size and PSNR of the same restored frames at CRF 18, on / off
  shards    a folder of photos restored by one process and by `torchrun --nproc-per-node 2`
            (wall time including start-up, and whether the outputs are byte-identical)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "src" / "demoe" / "assets" / "photos"


def panned(photo: str, frames: int, width: int = 640, height: int = 360) -> list[np.ndarray]:
    """`frames` RGB frames of a slow pan over a bundled photo scaled to 1.25x the frame width."""
    image = cv2.cvtColor(cv2.imread(str(PHOTOS / f"{photo}.png")), cv2.COLOR_BGR2RGB)
    scale = max(1.25 * width / image.shape[1], height / image.shape[0])
    image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
    step = (image.shape[1] - width) // frames
    return [np.ascontiguousarray(image[:height, i * step : i * step + width]) for i in range(frames)]


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 24) -> None:
    output = av.open(str(path), "w")
    video = output.add_stream("libx264", rate=fps)
    video.height, video.width = frames[0].shape[:2]
    video.pix_fmt = "yuv420p"
    sound = output.add_stream("aac", rate=48000, layout="mono")
    for pixels in frames:
        output.mux(video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
    output.mux(video.encode(None))
    samples = round(48000 * len(frames) / fps)
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
    resampler = av.AudioResampler(format=sound.codec_context.format.name, layout="mono", rate=48000)
    for begin in range(0, samples, 1024):
        piece = av.AudioFrame.from_ndarray(tone[None, begin : begin + 1024], format="flt", layout="mono")
        piece.sample_rate, piece.pts = 48000, begin
        for resampled in resampler.resample(piece):
            output.mux(sound.encode(resampled))
    output.mux(sound.encode(None))
    output.close()


def section_video(folder: Path, frames_per_shot: int) -> dict:
    from demoe.inference import Deblurrer
    from demoe.inference.video import analyse_video, restore_video, video_record

    clip = folder / "clip.mp4"
    write_clip(clip, panned("astronaut", frames_per_shot) + panned("coffee", frames_per_shot))
    deblurrer = Deblurrer(None, device="cpu")
    deblurrer.restore(np.zeros((360, 640, 3), np.uint8))  # warm-up
    start = time.perf_counter()
    analysis = analyse_video(clip, deblurrer)
    analysis_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = restore_video(clip, folder / "clip_deblurred.mp4", deblurrer, analysis)
    restore_seconds = time.perf_counter() - start
    record = video_record(str(clip), folder / "clip_deblurred.mp4", result, deblurrer.task_names, False)
    start = time.perf_counter()
    for _ in range(3):
        deblurrer.restore(np.zeros((360, 640, 3), np.uint8))
    image_seconds = (time.perf_counter() - start) / 3
    return {
        "frames": analysis.frames,
        "size": [analysis.width, analysis.height],
        "analysis_s_per_frame": analysis_seconds / analysis.frames,
        "restore_s_per_frame": restore_seconds / analysis.frames,
        "one_image_restore_s": image_seconds,
        "shots": [(s["start_frame"], s["frames"], s["experts_used"], s["router_frames"]) for s in record["shots"]],
        "audio": record["audio"],
    }


def section_mbtree(folder: Path, frames_per_shot: int) -> dict:
    frames = panned("astronaut", frames_per_shot) + panned("coffee", frames_per_shot)
    results = {}
    for mbtree in (1, 0):
        path = folder / f"mbtree{mbtree}.mp4"
        output = av.open(str(path), "w")
        stream = output.add_stream("libx264", rate=24)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "medium", "x264-params": f"mbtree={mbtree}"}
        for pixels in frames:
            output.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        output.mux(stream.encode(None))
        output.close()
        with av.open(str(path)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        mse = np.mean([(a.astype(np.float64) - b) ** 2 for a, b in zip(decoded, frames)])
        results[f"mbtree={mbtree}"] = {"bytes": path.stat().st_size, "psnr_db": 10 * np.log10(255**2 / mse)}
    return results


def section_shards(folder: Path, images: int) -> dict:
    from PIL import Image

    source = folder / "photos"
    source.mkdir()
    names = sorted(p.stem for p in PHOTOS.glob("*.png"))
    for index in range(images):
        Image.open(PHOTOS / f"{names[index % len(names)]}.png").convert("RGB").save(source / f"p{index:02d}.png")
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    timings = {}
    for label, prefix in [("1 process", [sys.executable, "-m", "demoe"]),
                          ("torchrun 2 processes", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc-per-node", "2", "-m", "demoe"])]:
        out = folder / label.replace(" ", "_")
        start = time.perf_counter()
        subprocess.run([*prefix, "deblur", str(source), "-o", str(out), "--device", "cpu", "--quiet"],
                       env=env, check=True, capture_output=True)
        timings[label] = {"wall_s": time.perf_counter() - start,
                          "hashes": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}}
    first, second = timings.values()
    return {
        "images": images,
        **{label: round(entry["wall_s"], 2) for label, entry in timings.items()},
        "identical": first["hashes"] == second["hashes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="video,mbtree,shards")
    parser.add_argument("--frames-per-shot", type=int, default=24)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args()
    results = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average": os.getloadavg(), "av": av.__version__},
    }
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for section in args.sections.split(","):
            if section == "video":
                results["video"] = section_video(folder, args.frames_per_shot)
            elif section == "mbtree":
                results["mbtree"] = section_mbtree(folder, args.frames_per_shot)
            elif section == "shards":
                results["shards"] = section_shards(folder, args.images)
            else:
                raise SystemExit(f"unknown section {section!r}")
            print(json.dumps({section: results[section]}, default=str), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
