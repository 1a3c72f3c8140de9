"""One-shot GPU run (issue 16, item 6): measure, train and hand back the weights in one call.

Written and tested on CPU with a tiny budget (tests/perf/test_gpu_oneshot.py); meant for one
call of the device tool on one H200 (docs/training.md, "One-shot GPU run"). Three commands:

    python benchmarks/gpu_oneshot.py pack  [--train-photos DIR ...] [--val-photos DIR ...] [--out .gpu_pack]
    python benchmarks/gpu_oneshot.py run   [--pack .gpu_pack] [--out $OUT] [--budget-minutes 9] [--preset auto]
    python benchmarks/gpu_oneshot.py merge OUT_DIR MODEL_DIR

`pack` (here, before the call) puts what the GPU machine cannot reach into one folder that the
device tool carries: training photographs as lossless WebP, chosen evenly from the training
collections until a byte budget is full (the whole working tree that travels has 64 MiB), and
the gate's held-out validation pairs (benchmarks/gate.py: Kodak24 + McMaster, every blur type,
normal and dark scenes, made by the numpy reference generator), centre-cropped, as 8-bit
lossless WebP.

`run` (on the GPU machine), within --budget-minutes of wall time in total:
1. measures the GPU numbers of docs/performance.md: batch-1 latency at 256x256, eager and with
   CUDA graphs, fp32 and bf16; bf16 vs fp32 agreement in dB; training images/s of `demoe` and
   `demoe-small` (bf16 autocast, channels_last, blur synthesised on the device) -> measurements.json;
2. picks the preset (--preset, or `auto`: the full `demoe` when its measured rate lets it see
   --min-full-crops crops in the training time, else `demoe-small`, which starts from the shipped
   weights; the full preset has no trained weights to start from);
3. trains with `demoe.train.train` on `synthetic_device` batches from the packed photographs, in
   chunks that end with a validation on the packed pairs, for whatever time is left;
4. after every chunk writes the weights as float16 safetensors split into files of at most
   16 MB (config.json + model-0000k-of-0000n.safetensors) and train_log.json (images/s and
   validation PSNR per blur type over time).
The output folder holds at most 8 files (the device tool returns no more).

`merge` joins the split float16 files into a model directory that `demoe.load_model` reads;
then run benchmarks/gate.py on it before anything ships.
"""

from __future__ import annotations

import time

START = time.monotonic()  # the wall budget counts from here, imports included

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from io import BytesIO  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import demoe  # noqa: E402
from demoe.checkpoints import CONFIG_FILE, WEIGHTS_FILE, read_config  # noqa: E402
from demoe.config import TASK_NAMES, get_preset  # noqa: E402
from demoe.data.synthetic import (  # noqa: E402
    DarkSceneConfig,
    PhotoBank,
    SynthConfig,
    SyntheticBlurBatches,
    load_photo,
    sharp_image_paths,
)
from demoe.fileio import atomic_write, atomic_write_text  # noqa: E402
from demoe.imageio import encode_png16, read_array  # noqa: E402
from demoe.model import DeblurUNet  # noqa: E402
from demoe.train import parse_config, train  # noqa: E402
from demoe.train.loop import build_training_model, cosine_factor, pixel_loss_value  # noqa: E402
from demoe.train.validation import ValidationResult, psnr, validate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import interleaved, summary  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TRAIN_COLLECTIONS = ("BSD200", "BSD100", "Urban100", "Set5", "Set14")  # the train split (shared/data/README.md)
DEFAULT_PACK = ROOT / ".gpu_pack"
SHIPPED_WEIGHTS = ROOT / "src" / "demoe" / "weights" / "default"
FILE_LIMIT = 16_000_000  # bytes per returned file: 16 MB, under the device tool's 16 MiB
MAX_FILES = 8  # files the device tool returns from $OUT
TRAVEL_LIMIT = 64 * 2**20  # the working tree that travels to the device machine, carried folders included
MEASURED_PRESETS = ("demoe", "demoe-small")
MEASUREMENTS_FILE, LOG_FILE = "measurements.json", "train_log.json"
PACK_INDEX = "pack.json"


# ============================================================================ pack


def lossless_webp(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> lossless WebP bytes (checked by decoding them again)."""
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="WEBP", lossless=True, quality=80, method=4)
    data = buffer.getvalue()
    with Image.open(BytesIO(data)) as decoded:
        if not np.array_equal(np.asarray(decoded.convert("RGB")), pixels):
            raise RuntimeError("WebP encoding was not lossless")
    return data


def centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The central side x side square of (H, W, C) (0 = the whole image)."""
    if side <= 0:
        return image
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    if top < 0 or left < 0:
        raise ValueError(f"a {side} px crop does not fit an image of {image.shape[0]}x{image.shape[1]}")
    return image[top : top + side, left : left + side]


def interleave(collections: dict[str, list[Path]], seed: int) -> list[tuple[str, Path]]:
    """Every collection shuffled (seeded), then one photograph of each in turn: a prefix of
    the result draws evenly from all collections."""
    rng = np.random.default_rng(seed)
    queues = {name: [paths[i] for i in rng.permutation(len(paths))] for name, paths in collections.items()}
    order = []
    while any(queues.values()):
        for name, queue in queues.items():
            if queue:
                order.append((name, queue.pop(0)))
    return order


def travelling_bytes(extra: Path | None = None) -> int:
    """Bytes the device tool sends: tracked and untracked-not-ignored files (+ a carried folder)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    total = sum((ROOT / name).stat().st_size for name in listing if name and (ROOT / name).is_file())
    if extra is not None:
        total += sum(path.stat().st_size for path in extra.rglob("*") if path.is_file())
    return total


def pack_validation(shared: Path, crop: int, folder: Path) -> tuple[list[dict], int]:
    """The gate's held-out synthetic pairs (benchmarks/gate.py: Kodak24 and McMaster, every blur
    type, normal and dark scenes, pinned ranges, 8-bit), centre-cropped, as lossless WebP files
    (S, 2S, 3) = blurry | sharp in ``folder``; returns their index entries and bytes."""
    from gate import validation_pairs

    items, used = [], 0
    for index, pair in enumerate(validation_pairs(shared)):
        pixels = np.concatenate([centre_crop(pair.blurry, crop), centre_crop(pair.sharp, crop)], axis=1)
        name = f"{index:04d}.webp"
        data = lossless_webp(np.round(pixels * 255).astype(np.uint8))
        (folder / name).write_bytes(data)
        used += len(data)
        items.append({"file": name, "task": pair.task, "group": "dark" if pair.group.endswith("(dark)") else "normal",
                      "source": pair.name})
    return items, used


def encode_photo(entry: tuple[str, Path]) -> tuple[str, Path, bytes, tuple[int, int]]:
    """(collection, path) -> (collection, path, lossless bytes, (H, W)): WebP for 8-bit
    photographs, 16-bit PNG for deeper ones (WebP holds 8 bits)."""
    collection, path = entry
    photo = load_photo(path)
    if photo.dtype != np.uint8:
        return collection, path, encode_png16(photo), photo.shape[:2]
    return collection, path, lossless_webp(photo), photo.shape[:2]


def encode_until_full(order: list[tuple[str, Path]], budget: int) -> tuple[list[tuple], list[str]]:
    """Encode photographs in ``order`` while they fit into ``budget`` bytes; returns the encoded
    entries and the names left out. Stops encoding once nothing has fitted for a while."""
    encoded, skipped, used = [], [], 0
    workers = max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        misses = 0
        for start in range(0, len(order), 4 * workers):  # in rounds, to stop once nothing fits
            if misses >= 8 * workers:  # the budget is full: the rest are left out unencoded
                skipped += [f"{collection}/{path.name}" for collection, path in order[start:]]
                break
            for collection, path, data, shape in pool.map(encode_photo, order[start : start + 4 * workers]):
                fits = used + len(data) <= budget
                misses = 0 if fits else misses + 1
                if fits:
                    used += len(data)
                    encoded.append((collection, path, data, shape))
                else:
                    skipped.append(f"{collection}/{path.name}")
    return encoded, skipped


def pack(args: argparse.Namespace) -> dict:
    """Write the pack folder (see the module docstring); returns its index."""
    out = Path(args.out)
    temporary = out.with_name(f"{out.name}.tmp")  # .gpu_pack.tmp: git-ignored like the pack
    if temporary.exists():
        shutil.rmtree(temporary)
    (temporary / "train").mkdir(parents=True)
    (temporary / "val").mkdir()
    budget = int(args.max_mib * 2**20)
    val_items, used = pack_validation(Path(args.shared), args.val_crop, temporary / "val")

    # Training photographs: evenly from every collection, until the budget is full.
    folders = args.train_photos or [Path(args.shared) / "data" / "sharp" / name for name in TRAIN_COLLECTIONS]
    collections = {Path(folder).name: sharp_image_paths(folder) for folder in folders}
    encoded, skipped = encode_until_full(interleave(collections, args.seed), budget - used)
    packed = []
    for collection, path, data, shape in encoded:
        name = f"{collection}/{path.stem}{'.webp' if data[:4] == b'RIFF' else '.png'}"
        (temporary / "train" / collection).mkdir(exist_ok=True)
        (temporary / "train" / name).write_bytes(data)
        used += len(data)
        packed.append({"file": name, "source": str(path), "sha1": hashlib.sha1(path.read_bytes()).hexdigest(),
                       "height": int(shape[0]), "width": int(shape[1]), "bytes": len(data)})
    if not packed:
        raise SystemExit(f"pack: no training photograph fits into {args.max_mib} MiB next to the validation pairs")
    index = {
        "train": packed,
        "train_skipped": skipped,
        "train_collections": {name: len(paths) for name, paths in collections.items()},
        "val": {"items": val_items, "crop_size": args.val_crop,
                "pairs": "benchmarks/gate.py validation_pairs (numpy reference generator, pinned ranges, 8-bit), "
                         "centre crops"},
        "bytes": used,
    }
    (temporary / PACK_INDEX).write_text(json.dumps(index, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(temporary, out)
    travel = travelling_bytes(out if out.resolve().is_relative_to(ROOT) else None)
    index["travel_bytes"] = travel
    print(f"pack: {len(packed)} training photographs ({len(skipped)} left out: budget), {len(val_items)} "
          f"validation pairs, {used / 2**20:.1f} MiB in {out}; the device tool would send "
          f"{travel / 2**20:.1f} MiB of {TRAVEL_LIMIT / 2**20:.0f}", flush=True)
    if travel > TRAVEL_LIMIT:
        print(f"pack: warning: over the device tool's {TRAVEL_LIMIT / 2**20:.0f} MiB; pass a smaller --max-mib",
              file=sys.stderr)
    return index


# ============================================================================ packed data on the device machine


class PackedPairs:
    """The packed validation pairs, in memory: items as the training loop's validation reads
    them (blurry, sharp (3, S, S) float32 in [0, 1], label, dataset "normal" or "dark")."""

    def __init__(self, folder: Path) -> None:
        index = json.loads((folder / PACK_INDEX).read_text())
        self.items = []
        for entry in index["val"]["items"]:
            pixels = read_array(folder / "val" / entry["file"])  # (S, 2S, 3) uint8
            tensor = torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255.0)
            side = tensor.shape[1]
            self.items.append({
                "blurry": tensor[:, :, :side].contiguous(),
                "sharp": tensor[:, :, side:].contiguous(),
                "label": torch.tensor(TASK_NAMES.index(entry["task"]), dtype=torch.int64),
                "dataset": entry["group"],  # "normal" or "dark": validation reports each
            })
        if not self.items:
            raise ValueError(f"{folder}: the pack holds no validation pairs")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]

    def set_epoch(self, epoch: int) -> None:
        """Fixed pairs: the same every epoch."""


def packed_photos(folder: Path) -> list[Path]:
    index = json.loads((folder / PACK_INDEX).read_text())
    return [folder / "train" / entry["file"] for entry in index["train"]]


# ============================================================================ float16 shards


def shard_names(count: int) -> list[str]:
    return [f"model-{index:05d}-of-{count:05d}.safetensors" for index in range(1, count + 1)]


def _header_bytes(entries: dict[str, torch.Tensor], metadata: dict[str, str]) -> int:
    """Size of a safetensors header for these tensors (JSON, padded to 8 bytes, plus its length)."""
    header = {"__metadata__": metadata}
    offset = 0
    for name, tensor in entries.items():
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": "F16", "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"))
    return 8 + len(text) + 8  # length prefix, JSON, at most 7 bytes of padding (+1 spare)


def split_state(state: dict[str, torch.Tensor], max_bytes: int = FILE_LIMIT) -> list[dict[str, torch.Tensor]]:
    """A state dict in float16 (integer buffers kept), split in key order into shards whose
    safetensors files are at most `max_bytes` each."""
    half = {name: (t.detach().to(torch.float16) if t.is_floating_point() else t.detach()).cpu().contiguous()
            for name, t in state.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    for name, tensor in half.items():
        candidate = {**shards[-1], name: tensor}
        payload = sum(t.numel() * t.element_size() for t in candidate.values())
        if payload + _header_bytes(candidate, _shard_metadata(99999, 99999)) > max_bytes:
            if not shards[-1]:
                raise ValueError(f"tensor {name} ({tensor.numel() * tensor.element_size()} bytes) alone exceeds "
                                 f"the {max_bytes}-byte file limit")
            shards.append({name: tensor})
            if tensor.numel() * tensor.element_size() + _header_bytes(shards[-1], _shard_metadata(99999, 99999)) > max_bytes:
                raise ValueError(f"tensor {name} alone exceeds the {max_bytes}-byte file limit")
        else:
            shards[-1] = candidate
    return shards


def _shard_metadata(index: int, count: int) -> dict[str, str]:
    return {"format": "pt", "shard": str(index), "shards": str(count), "dtype": "float16"}


def write_shards(model_dir: Path, out: Path, max_bytes: int = FILE_LIMIT, extra: dict | None = None) -> list[Path]:
    """A model directory's weights as float16 shards + its config.json in `out` (atomic writes;
    shards of an earlier export that are no longer part of the set are removed)."""
    from safetensors.torch import load_file

    state = load_file(str(model_dir / WEIGHTS_FILE))
    shards = split_state(state, max_bytes)
    names = shard_names(len(shards))
    written = []
    for index, (name, shard) in enumerate(zip(names, shards), start=1):
        target = out / name
        atomic_write(target, lambda path, shard=shard, index=index: save_file(shard, path, _shard_metadata(index, len(shards))))
        if target.stat().st_size > max_bytes:  # the estimate above is conservative; this is the check
            raise RuntimeError(f"{target} has {target.stat().st_size} bytes, over the {max_bytes}-byte limit")
        written.append(target)
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    config.setdefault("extra", {}).update({"weights_dtype": "float16", "shards": names, **(extra or {})})
    written.append(atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n"))
    for stale in out.glob("model-*-of-*.safetensors"):
        if stale.name not in names:
            stale.unlink()
    return written


def merge(shard_dir: Path, model_dir: Path) -> Path:
    """float16 shards (+ config.json) -> MODEL_DIR/config.json + model.safetensors (float16),
    checked: every shard of the set present, no tensor twice, the model loads strictly."""
    config = json.loads((shard_dir / CONFIG_FILE).read_text())
    names = config.get("extra", {}).get("shards")
    if not names:
        raise ValueError(f"{shard_dir / CONFIG_FILE} names no shards (extra.shards): not a gpu_oneshot output")
    missing = [name for name in names if not (shard_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{shard_dir}: missing shard(s) {', '.join(missing)}")
    state: dict[str, torch.Tensor] = {}
    for name in names:
        with safe_open(str(shard_dir / name), framework="pt") as handle:
            for key in handle.keys():
                if key in state:
                    raise ValueError(f"{name}: tensor {key} is also in an earlier shard")
                state[key] = handle.get_tensor(key)
    model = DeblurUNet(demoe.ModelConfig.from_dict(config["model"]))
    model.load_state_dict(state, strict=True)  # names and shapes, before anything is written
    model_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(model_dir / WEIGHTS_FILE, lambda path: save_file(state, path, {"format": "pt", "dtype": "float16"}))
    atomic_write_text(model_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    demoe.load_model(model_dir)  # the merged directory is what demoe reads
    return model_dir


# ============================================================================ measurements


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None, cache_enabled=False)


def attempt(results: dict, key: str, measure: Callable[[], object]) -> None:
    """Run one measurement; a failure (out of memory, a capture the driver refuses) is
    recorded as its error and the run goes on."""
    started = time.monotonic()
    try:
        results[key] = measure()
    except (RuntimeError, ValueError) as error:  # torch reports CUDA failures as RuntimeError
        results[key] = {"error": f"{type(error).__name__}: {error}"}
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(f"  {key}: {time.monotonic() - started:.1f} s", flush=True)


def cuda_graph(model: DeblurUNet, x: torch.Tensor, dtype: torch.dtype | None, task: str) -> Callable[[], None]:
    """The forward pass captured as a CUDA graph (static input and task); returns its replay."""
    static = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(stream):
        for _ in range(3):  # warm-up outside the capture (cuDNN picks its algorithms here)
            with autocast(x.device, dtype):
                model(static, task=task)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph), autocast(x.device, dtype):
        model(static, task=task)
    return graph.replay


def latency(preset: str, device: torch.device, size: int, repeats: int) -> dict:
    """Batch-1 latency (ms) at size x size: automatic routing and a fixed task, eager in fp32
    and bf16, and the fixed task replayed as a CUDA graph (CUDA only). Random weights: speed
    does not depend on their values."""
    torch.manual_seed(0)
    model = demoe.create_model(preset).eval().to(device).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, size, size, device=device)
    rows = []
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        def under(call, dtype=dtype):
            def run():
                with autocast(device, dtype):
                    return call()
            return run

        runs = {"eager, automatic routing (top-1)": under(lambda: model(x)),
                "eager, fixed task": under(lambda: model(x, task="defocus"))}
        if device.type == "cuda":
            try:  # a capture the driver refuses costs this row, not the eager ones
                runs["CUDA graph, fixed task"] = cuda_graph(model, x, dtype, "defocus")
            except RuntimeError as error:
                rows.append({"preset": preset, "precision": precision, "path": "CUDA graph, fixed task",
                             "error": f"{type(error).__name__}: {error}"})
        for path, seconds in interleaved(runs, repeats, warmup=3, device=device).items():
            rows.append({"preset": preset, "precision": precision, "path": path, **summary(seconds)})
    if device.type != "cuda":
        rows.append({"preset": preset, "path": "CUDA graph, fixed task", "note": "not measured: no CUDA device"})
    return {"size": size, "batch": 1, "rows": rows}


def precision_agreement(model: DeblurUNet, blurry: torch.Tensor, sharp: torch.Tensor) -> dict:
    """bf16 autocast against fp32 on the same images: PSNR of one output against the other,
    and each one's PSNR against the sharp images (its difference is what bf16 costs)."""
    model = model.eval()
    with torch.no_grad():
        exact = model(blurry).image.float().clamp(0, 1)
        with autocast(blurry.device, torch.bfloat16):
            fast = model(blurry).image.float().clamp(0, 1)
    agreement = psnr(fast, exact).cpu()
    return {
        "images": int(blurry.shape[0]),
        "size": list(blurry.shape[-2:]),
        "bf16_vs_fp32_psnr_db": {"mean": float(agreement.mean()), "min": float(agreement.min())},
        "fp32_vs_sharp_psnr_db": float(psnr(exact, sharp).mean()),
        "bf16_vs_sharp_psnr_db": float(psnr(fast, sharp).mean()),
        "bf16_minus_fp32_db": float(psnr(fast, sharp).mean() - psnr(exact, sharp).mean()),
    }


def training_rate(preset: str, batches: SyntheticBlurBatches, batch_size: int, device: torch.device,
                  steps: int, dtype: torch.dtype | None) -> dict:
    """Images/s of the trainer's step (forward under autocast, per-image PSNR loss + 0.1 CE in
    fp32, backward, AdamW; channels_last; a host sync per step for the loss check, as the loop
    does), of the blur synthesis alone, and of both together: what a run gets."""
    torch.manual_seed(0)
    model = DeblurUNet(get_preset(preset)).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.9))
    fixed = batches.batch(0, batch_size)

    def step(batch: dict) -> None:
        blurry = batch["blurry"].contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            output = model(blurry)
        loss = pixel_loss_value(output.image.float(), batch["sharp"], "psnr")
        loss = loss + 0.1 * F.cross_entropy(output.router_logits.float(), batch["label"])
        if not bool(torch.isfinite(loss.detach())):
            raise RuntimeError("non-finite loss in the throughput measurement")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def rate(work: Callable[[int], None]) -> float:
        for index in range(2):
            work(index)
        synchronize(device)
        started = time.perf_counter()
        for index in range(steps):
            work(2 + index)
        synchronize(device)
        return batch_size * steps / (time.perf_counter() - started)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = {
        "preset": preset, "crop": batches.crop_size, "batch": batch_size, "steps": steps,
        "precision": "bf16 autocast" if dtype else "fp32", "channels_last": True,
        "model_step_images_per_s": rate(lambda index: step(fixed)),
        "synthesis_images_per_s": rate(lambda index: batches.batch(index, batch_size)),
        "step_with_synthesis_images_per_s": rate(lambda index: step(batches.batch(index, batch_size))),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "device": str(device), "date": time.strftime("%Y-%m-%d %H:%M %Z"), "command": " ".join(sys.argv)}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(gpu=properties.name, gpu_memory_gib=properties.total_memory / 2**30,
                    compute_capability=f"{properties.major}.{properties.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


# ============================================================================ run


@dataclass
class Plan:
    """What `run` trains, after the measurements."""

    preset: str
    warm_start: Path | None
    rule: str
    train_seconds: float
    steps_per_second: float
    total_steps: int


def shipped_matches(preset: str) -> bool:
    """Whether the shipped weights are of this preset's architecture (a warm start)."""
    if not (SHIPPED_WEIGHTS / CONFIG_FILE).is_file():
        return False
    return read_config(SHIPPED_WEIGHTS).replace(name=preset) == get_preset(preset).replace(name=preset)


def choose(args: argparse.Namespace, rates: dict[str, float], train_seconds: float) -> tuple[str, str]:
    """(preset, the reason) from the measured images/s with synthesis (`rates`)."""
    if args.preset != "auto":
        return args.preset, "given with --preset"
    full = rates.get("demoe")
    if full is None:
        return "demoe-small", "auto: the full preset could not be measured"
    crops = full * train_seconds
    if crops >= args.min_full_crops:
        return "demoe", f"auto: demoe would see {crops:,.0f} crops >= --min-full-crops {args.min_full_crops:,.0f}"
    return "demoe-small", (f"auto: demoe would see only {crops:,.0f} crops (< --min-full-crops "
                           f"{args.min_full_crops:,.0f}) from random weights; demoe-small continues the shipped weights")


def train_config(args: argparse.Namespace, plan: Plan, pack_dir: Path, device: torch.device, length: int):
    values = {
        "stage": "experts",
        "seed": args.seed,
        "model": {"preset": plan.preset, "init_from": None if plan.warm_start is None else str(plan.warm_start)},
        "data": {"train": {"kind": "synthetic_device", "photos": str(pack_dir / "train"), "crop_size": args.crop,
                           "length": length, "dark_scenes": args.dark_scenes}},
        "optim": {"lr": args.lr or (5e-4 if plan.warm_start else 1e-3), "min_lr": 1e-6, "betas": [0.9, 0.9],
                  "weight_decay": 0.0},
        "loss": {"pixel": "psnr", "pixel_weight": 1.0, "class_weight": 0.1},
        "train": {"batch_size": args.batch, "total_steps": plan.total_steps, "trainable": "all",
                  "routing": "dense", "num_workers": 0},
        "runtime": {"device": device.type, "precision": "bf16", "channels_last": True},
        "log": {"log_every": 50, "validate_every": 0, "save_every": 10**9, "keep_checkpoints": 1,
                "sample_images": 0, "progress": False, "tensorboard": False},
    }
    return parse_config(values)


def validation_row(result: ValidationResult, step: int, images: int, wall: float) -> dict:
    gains = {task: result.psnr_by_task[task] - result.input_psnr_by_task[task] for task in result.psnr_by_task}
    return {
        "step": step, "images_seen": images, "wall_s": round(wall, 1),
        "psnr_db": result.scalars()["val/psnr"],
        "psnr_by_group_db": result.psnr,
        "psnr_by_task_db": result.psnr_by_task,
        "input_psnr_by_task_db": result.input_psnr_by_task,
        "gain_by_task_db": gains,
        "mean_gain_db": sum(gains.values()) / len(gains),
        "router_accuracy": result.router_accuracy,
    }


def write_json(path: Path, values: dict) -> None:
    atomic_write_text(path, json.dumps(values, indent=1) + "\n")


def open_data(args: argparse.Namespace, pack_dir: Path, device: torch.device):
    """The pack's photographs on the device (as a blur-synthesising batch source) and its
    validation pairs in memory."""
    synth = SynthConfig(dark_scene=DarkSceneConfig(probability=args.dark_scenes))
    margin = max(synth.margin_px(task, args.crop) for task in TASK_NAMES)
    bank = PhotoBank.from_paths(packed_photos(pack_dir), device, min_side=args.crop + 2 * margin)
    val_pairs = PackedPairs(pack_dir)
    length = max(len(bank) * len(TASK_NAMES), args.batch)
    batches = SyntheticBlurBatches(bank, crop_size=args.crop, seed=args.seed, length=length, config=synth)
    print(f"  {len(bank)} photographs on the device ({bank.upsampled} upsampled to the {args.crop + 2 * margin} px "
          f"that a crop with its blur margin needs), {len(val_pairs)} validation pairs", flush=True)
    return synth, bank, val_pairs, batches


def measure(args: argparse.Namespace, device: torch.device, batches: SyntheticBlurBatches) -> dict:
    """Latency, bf16-vs-fp32 agreement of the shipped weights and training rate of each preset."""
    measurements: dict = {"machine": machine(device), "latency": {}, "training": {}, "precision_agreement": {}}
    presets = args.measure_presets
    for preset in presets:
        attempt(measurements["latency"], preset, lambda preset=preset: latency(preset, device, args.latency_size, args.repeats))
    if shipped_matches("demoe-small") and "demoe-small" in presets:
        probe = batches.batch(10**6, 2 * len(TASK_NAMES))  # two crops of each blur type
        attempt(measurements["precision_agreement"], "demoe-small (shipped weights)",
                lambda: precision_agreement(demoe.load_model(SHIPPED_WEIGHTS, device=device), probe["blurry"], probe["sharp"]))
    for preset in presets:
        attempt(measurements["training"], preset,
                lambda preset=preset: training_rate(preset, batches, args.batch, device, args.measure_steps, torch.bfloat16))
    return measurements


def make_plan(args: argparse.Namespace, measurements: dict, batches: SyntheticBlurBatches, device: torch.device,
              deadline: float) -> Plan:
    """The preset the measured rates favour and the steps that fit before ``deadline``."""
    rates = {preset: row["step_with_synthesis_images_per_s"] for preset, row in measurements["training"].items()
             if "error" not in row}
    train_seconds = deadline - time.monotonic() - args.reserve_seconds
    preset, rule = choose(args, rates, max(train_seconds, 0.0))
    if preset not in rates:
        attempt(measurements["training"], preset,
                lambda: training_rate(preset, batches, args.batch, device, args.measure_steps, torch.bfloat16))
        if "error" in measurements["training"][preset]:
            raise SystemExit(f"run: {preset} cannot train here: {measurements['training'][preset]['error']}")
        rates[preset] = measurements["training"][preset]["step_with_synthesis_images_per_s"]
        train_seconds = deadline - time.monotonic() - args.reserve_seconds
    steps_per_second = rates[preset] / args.batch
    plan = Plan(preset=preset, warm_start=SHIPPED_WEIGHTS if shipped_matches(preset) else None, rule=rule,
                train_seconds=train_seconds, steps_per_second=steps_per_second,
                total_steps=max(1, min(args.max_steps or 2**62, int(train_seconds * steps_per_second * args.safety))))
    measurements["choice"] = {"preset": plan.preset, "rule": rule, "warm_start": str(plan.warm_start) if plan.warm_start else None,
                              "train_seconds_planned": round(train_seconds, 1), "total_steps": plan.total_steps}
    if train_seconds < 1:
        print(f"plan: {plan.preset} ({rule}); no time is left to train ({train_seconds:.0f} s)", flush=True)
    else:
        print(f"plan: {plan.preset} ({rule}); {plan.total_steps} steps of {args.batch} x {args.crop}^2 in "
              f"{train_seconds:.0f} s", flush=True)
    return plan


def train_in_chunks(args: argparse.Namespace, plan: Plan, config, batches: SyntheticBlurBatches, val_pairs: PackedPairs,
                    deadline: float, out: Path, log: dict) -> int:
    """Train ``plan.total_steps`` in ``args.chunks`` chunks, each ending with a validation, the
    weights and the log in ``out``, stopping early when the budget runs out; returns the steps done."""
    run_dir = Path(args.run_dir)
    done, rate = 0, plan.steps_per_second
    boundaries = sorted({max(1, round(plan.total_steps * k / args.chunks)) for k in range(1, args.chunks + 1)})
    for boundary in boundaries:
        left = deadline - args.reserve_seconds - time.monotonic()
        fit = int(left * rate * 0.95)
        if fit < 1:
            log["status"] = "stopped early: the budget ran out"
            return done
        target = min(boundary, done + fit)
        started = time.monotonic()
        result = train(config, run_dir, resume=True, max_steps=target, train_dataset=batches, val_dataset=val_pairs)
        seconds = time.monotonic() - started
        rate = (target - done) / seconds  # what this chunk achieved, validation and saving included
        log["chunks"].append({"steps": [done, target], "wall_s": round(seconds, 2),
                              "images_per_s": (target - done) * args.batch / seconds,
                              "lr_at_end": config.optim.lr * cosine_factor(target, plan.total_steps, config.optim.lr,
                                                                           config.optim.min_lr)})
        done = target
        log["evaluations"].append(validation_row(result.validation, done, done * args.batch, time.monotonic() - START))
        write_shards(result.last_dir, out, args.max_file_bytes,
                     extra={"trained_by": "benchmarks/gpu_oneshot.py", "step": done, "total_steps": plan.total_steps,
                            "preset_rule": plan.rule})
        write_json(out / LOG_FILE, log)
        last = log["evaluations"][-1]
        print(f"step {done}/{plan.total_steps}: {log['chunks'][-1]['images_per_s']:.0f} images/s, val PSNR "
              f"{last['psnr_db']:.2f} dB, mean gain {last['mean_gain_db']:+.2f} dB, router "
              f"{last['router_accuracy'] if last['router_accuracy'] is None else round(last['router_accuracy'], 3)}",
              flush=True)
        if target < boundary:
            log["status"] = "stopped early: the budget ran out"
            return done
    log["status"] = "done"
    return done


def run(args: argparse.Namespace) -> dict:
    deadline = START + args.budget_minutes * 60
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out or os.environ.get("OUT") or "")
    if not str(out):
        raise SystemExit("run: give --out (or run where $OUT is set, as the device tool does)")
    out.mkdir(parents=True, exist_ok=True)
    pack_dir = Path(args.pack)
    if not (pack_dir / PACK_INDEX).is_file():
        raise SystemExit(f"run: {pack_dir} is not a pack (no {PACK_INDEX}); make one with `gpu_oneshot.py pack`")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    print(f"gpu_oneshot run on {device}: budget {args.budget_minutes} min, output {out}", flush=True)

    synth, bank, val_pairs, batches = open_data(args, pack_dir, device)  # 1. data
    measurements = measure(args, device, batches)  # 2. measurements
    write_json(out / MEASUREMENTS_FILE, measurements)
    plan = make_plan(args, measurements, batches, device, deadline)  # 3. the plan
    write_json(out / MEASUREMENTS_FILE, measurements)

    # 4. Training in chunks, each ending with a validation, the weights and the log.
    config = train_config(args, plan, pack_dir, device, len(batches))
    if Path(args.run_dir).exists():
        shutil.rmtree(args.run_dir)
    val_loader = DataLoader(val_pairs, batch_size=args.batch)
    log = {"preset": plan.preset, "rule": plan.rule, "warm_start": measurements["choice"]["warm_start"],
           "crop": args.crop, "batch": args.batch, "lr": config.optim.lr, "total_steps": plan.total_steps,
           "dark_scenes": args.dark_scenes, "photographs": len(bank), "photographs_upsampled": bank.upsampled,
           "synth_config": dataclasses.asdict(synth), "validation_pairs": len(val_pairs),
           "validation": "the gate's validation pairs, centre crops (pack.json), fp32, the model's own routing; "
                         "psnr_by_group_db: normal and dark scenes",
           "evaluations": [], "chunks": [], "status": "training"}
    initial = build_training_model(config).to(device).to(memory_format=torch.channels_last)
    log["evaluations"].append(validation_row(validate(initial, val_loader, device, None), 0, 0, time.monotonic() - START))
    del initial
    write_json(out / LOG_FILE, log)
    done = train_in_chunks(args, plan, config, batches, val_pairs, deadline, out, log)
    log["final_step"] = done

    # 5. The trained weights' precision agreement, the final files.
    if done:
        trained = demoe.load_model(Path(args.run_dir) / "last", device=device)
        pairs = next(iter(DataLoader(val_pairs, batch_size=min(len(val_pairs), 16))))
        attempt(measurements["precision_agreement"], f"{plan.preset} (trained here, validation pairs)",
                lambda: precision_agreement(trained, pairs["blurry"].to(device), pairs["sharp"].to(device)))
    measurements["wall_s"] = round(time.monotonic() - START, 1)
    log["wall_s"] = measurements["wall_s"]
    write_json(out / MEASUREMENTS_FILE, measurements)
    write_json(out / LOG_FILE, log)
    files = [path for path in out.iterdir() if path.is_file() and not path.name.startswith(".")]
    too_big = [path.name for path in files if path.stat().st_size > FILE_LIMIT]
    print(f"done in {measurements['wall_s']} s: {len(files)} files in {out}" + (f"; OVER 16 MB: {too_big}" if too_big else ""),
          flush=True)
    if len(files) > MAX_FILES:
        print(f"warning: {len(files)} files in {out}, the device tool returns {MAX_FILES}", file=sys.stderr)
    return {"measurements": measurements, "log": log}


# ============================================================================ command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    packing = commands.add_parser("pack", help="put photographs and validation pairs into a folder that travels")
    packing.add_argument("--shared", type=Path, default=SHARED,
                         help="the shared data folder (default ../shared): the gate's validation pairs come from "
                              "its data/sharp/{Kodak24,McMaster}")
    packing.add_argument("--train-photos", nargs="+", type=Path, default=None,
                         help="folders of sharp training photographs (default: the train split, "
                              "SHARED/data/sharp/{BSD200,BSD100,Urban100,Set5,Set14})")
    packing.add_argument("--out", type=Path, default=DEFAULT_PACK, help="pack folder (default .gpu_pack, git-ignored)")
    packing.add_argument("--max-mib", type=float, default=36.0,
                         help="pack size in MiB (default 36: with the ~20 MiB tree it stays under the tool's 64)")
    packing.add_argument("--val-crop", type=int, default=128,
                         help="side of the centre crop kept of each 256x256 validation pair (default 128)")
    packing.add_argument("--seed", type=int, default=16, help="seed of the photographs' order")

    running = commands.add_parser("run", help="measure, train and write the weights (on the GPU machine)")
    running.add_argument("--pack", type=Path, default=DEFAULT_PACK, help="the pack folder (default .gpu_pack)")
    running.add_argument("--out", type=Path, default=None, help="output folder (default $OUT)")
    running.add_argument("--budget-minutes", type=float, default=9.0,
                         help="wall time of the whole command, start-up and measurements included (default 9)")
    running.add_argument("--reserve-seconds", type=float, default=40.0,
                         help="kept free at the end for the last validation and files (default 40)")
    running.add_argument("--preset", default="auto", choices=["auto", *sorted(demoe.PRESETS)],
                         help="what to train (default auto: from the measured throughput)")
    running.add_argument("--min-full-crops", type=float, default=2e6,
                         help="auto: crops the full demoe must see in the budget to be chosen (default 2e6)")
    running.add_argument("--measure-presets", nargs="+", default=list(MEASURED_PRESETS),
                         help="presets whose latency and training rate are measured (default demoe demoe-small)")
    running.add_argument("--crop", type=int, default=192,
                         help="training crop side (default 192: with the largest blur margin, 268 px fit the "
                              "321-px side of BSD photographs without upsampling)")
    running.add_argument("--batch", type=int, default=32, help="training batch (default 32)")
    running.add_argument("--lr", type=float, default=None, help="learning rate (default 5e-4 warm start, 1e-3 fresh)")
    running.add_argument("--dark-scenes", type=float, default=0.25, help="share of dark but normally exposed scenes")
    running.add_argument("--seed", type=int, default=16)
    running.add_argument("--chunks", type=int, default=6, help="validations (and weight exports) during training")
    running.add_argument("--safety", type=float, default=0.9, help="share of the measured rate the schedule assumes")
    running.add_argument("--max-steps", type=int, default=None, help="at most this many steps (default: what fits)")
    running.add_argument("--latency-size", type=int, default=256, help="side of the latency input (default 256)")
    running.add_argument("--repeats", type=int, default=30, help="timed rounds per latency variant")
    running.add_argument("--measure-steps", type=int, default=10, help="timed steps per training-rate measurement")
    running.add_argument("--max-file-bytes", type=int, default=FILE_LIMIT, help=argparse.SUPPRESS)
    running.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    running.add_argument("--run-dir", type=Path, default=Path("/tmp/gpu_oneshot_run"),
                         help="training checkpoints (not returned; default /tmp/gpu_oneshot_run)")

    merging = commands.add_parser("merge", help="join the float16 shards into a model directory")
    merging.add_argument("shards", type=Path, help="the run's output folder")
    merging.add_argument("model_dir", type=Path, help="model directory to write (config.json + model.safetensors)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "pack":
        pack(args)
    elif args.command == "run":
        run(args)
    else:
        directory = merge(args.shards, args.model_dir)
        model = demoe.load_model(directory)
        print(f"merged into {directory}: {model.config.name}, {model.num_parameters:,} parameters (float16 on disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
