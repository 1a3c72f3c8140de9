"""Tiny fake copies of the benchmark releases, in their official layouts, for the data tests.

Images are a few pixels wide; the blurry image of a pair is its sharp image plus a constant,
so a pair's MSE is known: (offset / 255)^2 for 8-bit files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from demoe.imageio import write_image

SIZE = (6, 8)  # (H, W) of every fake image


def write_pair(blurry: Path, sharp: Path, seed: int, offset: int = 10, bit_depth: int = 8, size=SIZE) -> None:
    rng = np.random.default_rng(seed)
    peak = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    scale = 1 if bit_depth == 8 else 257
    base = rng.integers(0, peak - offset * scale, size=(*size, 3), endpoint=True)
    write_image(sharp, base.astype(dtype))
    write_image(blurry, (base + offset * scale).astype(dtype))


def make_gopro(root: Path, train: dict[str, int], test: dict[str, int], first_frame: int = 47) -> Path:
    """GOPRO_Large/{train,test}/<sequence>/{blur,blur_gamma,sharp}/NNNNNN.png."""
    for split, sequences in (("train", train), ("test", test)):
        for number, (sequence, frames) in enumerate(sequences.items()):
            for frame in range(first_frame, first_frame + frames):
                folder = root / split / sequence
                name = f"{frame:06d}.png"
                write_pair(folder / "blur" / name, folder / "sharp" / name, seed=number * 1000 + frame)
                write_image(folder / "blur_gamma" / name, np.full((*SIZE, 3), 7, np.uint8))
    return root


REALBLUR_J = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"


def make_realblur(root: Path, train: dict[int, int], test: dict[int, int], lists_in: str = ".") -> Path:
    """RealBlur/<REALBLUR_J>/sceneNNN/{blur/blur_N.png, gt/gt_N.png} + the two list files, written
    like the official ones: GT first, a trailing space, no newline after the last line."""
    for split, scenes in (("train", train), ("test", test)):
        lines = []
        for scene, images in scenes.items():
            for index in range(1, images + 1):
                gt = f"{REALBLUR_J}/scene{scene:03d}/gt/gt_{index}.png"
                blur = f"{REALBLUR_J}/scene{scene:03d}/blur/blur_{index}.png"
                write_pair(root / blur, root / gt, seed=scene * 100 + index)
                lines.append(f"{gt} {blur} ")
        list_dir = root / lists_in
        list_dir.mkdir(parents=True, exist_ok=True)
        (list_dir / f"RealBlur_J_{split}_list.txt").write_text("\n".join(lines))
    return root


def make_rsblur(root: Path, splits: dict[str, list[tuple[str, str]]]) -> Path:
    """RSBlur/<folder>/<id>/{real_blur/real_blur.png, gt/gt_sharp.png} and datalist/RSBlur lists."""
    list_dir = root / "datalist" / "RSBlur"
    list_dir.mkdir(parents=True, exist_ok=True)
    for split, items in splits.items():
        lines = []
        for number, (folder, image_id) in enumerate(items):
            pair = root / folder / image_id
            write_pair(pair / "real_blur" / "real_blur.png", pair / "gt" / "gt_sharp.png", seed=number)
            write_image(pair / "avg65_img" / "avg_blur.png", np.zeros((*SIZE, 3), np.uint8))
            lines.append(f"RSBlur/{folder}/{image_id}/gt/gt_sharp.png RSBlur/{folder}/{image_id}/real_blur/real_blur.png")
        (list_dir / f"RSBlur_real_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_reloblur(root: Path, train: dict[str, int], test: dict[str, int], masks: bool = True) -> Path:
    """ReLoBlur/dataset/{train,test}/<scene>/<seq>/NN_{sharp,blur}.png and masks/<split>/.../NN.png."""
    for split, scenes in (("train", train), ("test", test)):
        for scene, images in scenes.items():
            for index in range(images):
                folder = root / "dataset" / split / scene / "00"
                write_pair(folder / f"{index:02d}_blur.png", folder / f"{index:02d}_sharp.png", seed=index)
                if masks:
                    mask = np.zeros(SIZE, np.uint8)
                    mask[:2] = 255
                    write_image(root / "masks" / split / scene / "00" / f"{index:02d}.png", mask)
    return root


def make_lolblur(root: Path, train: dict[str, list[int]], test: dict[str, list[int]]) -> Path:
    """LOLBlur/{train,test}/{low_blur_noise,high_sharp_scaled,...}/<video>/<frame>.png; the lists
    give each frame's blurry offset (so its MSE is (offset/255)^2). Frame names repeat across videos."""
    for split, videos in (("train", train), ("test", test)):
        for video, offsets in videos.items():
            for frame, offset in enumerate(offsets, start=1):
                folder = root / split
                name = Path(video) / f"{frame:04d}.png"
                write_pair(folder / "low_blur_noise" / name, folder / "high_sharp_scaled" / name, seed=frame, offset=offset)
                write_image(folder / "low_blur" / name, np.zeros((*SIZE, 3), np.uint8))
    return root


def make_dpdd(root: Path, counts: dict[str, int]) -> Path:
    """dd_dp_dataset_canon/<split>_c/{source,target}/ with 16-bit PNGs whose names differ
    (target = source frame number + 1), plus the _l/_r dual-pixel views."""
    for split, count in counts.items():
        for index in range(count):
            frame = 890 + 10 * index
            source = root / f"{split}_c" / "source" / f"1P0A{frame:04d}.png"
            target = root / f"{split}_c" / "target" / f"1P0A{frame + 1:04d}.png"
            write_pair(source, target, seed=index, bit_depth=16)
            for view in ("l", "r"):
                write_image(root / f"{split}_{view}" / "source" / source.name, np.zeros((*SIZE, 3), np.uint16))
    return root


def make_realdof(root: Path, count: int, target_names: str = "same") -> Path:
    """RealDOF/{source,target}/realdof_N.png (target names differ if target_names != 'same')."""
    for index in range(1, count + 1):
        target_name = f"realdof_{index}.png" if target_names == "same" else f"gt_{index}.png"
        write_pair(root / "source" / f"realdof_{index}.png", root / "target" / target_name, seed=index)
    return root


def make_real_lolblur(root: Path, own: int, copied_from: list[Path] = (), realblur_folder: int = 0) -> Path:
    """Real-LOLBlur/ with `own` night images, byte copies of `copied_from` files (RealBlur-J
    blurry images) and `realblur_folder` images in a 'RealBlur' sub-folder."""
    rng = np.random.default_rng(5)
    for index in range(own):
        write_image(root / f"night_{index:04d}.png", rng.integers(0, 60, (*SIZE, 3)).astype(np.uint8))
    for index, source in enumerate(copied_from):
        (root / f"rb_{index:04d}.png").write_bytes(Path(source).read_bytes())
    for index in range(realblur_folder):
        write_image(root / "RealBlur" / f"{index}.png", rng.integers(0, 60, (*SIZE, 3)).astype(np.uint8))
    return root


def make_aio_blur_root(root: Path, lolblur_offsets: list[int] | None = None) -> Path:
    """Every AIO-Blur and OOD dataset under `root`, in the documented folder names."""
    make_realblur(root / "RealBlur", train={1: 3, 3: 3}, test={2: 2})  # 6 train, 2 test
    make_reloblur(root / "ReLoBlur", train={"s01": 3}, test={"scene1": 1})  # 3 / 1
    offsets = lolblur_offsets or [2, 2, 3, 3, 4, 10, 11, 12, 20, 21, 40]
    make_lolblur(root / "LOLBlur", train={"0001": offsets[:6], "0002": offsets[6:]}, test={"0256": [5, 6]})
    make_gopro(root / "GOPRO_Large", train={"GOPR0372_07_00": 4}, test={"GOPR0384_11_00": 2})  # 4 / 2
    make_dpdd(root / "dd_dp_dataset_canon", {"train": 1, "val": 1, "test": 2})
    make_realdof(root / "RealDOF", 3)
    make_rsblur(root / "RSBlur", {"train": [("0001", "000001")], "val": [("0001", "000002")], "test": [("0002", "000001"), ("0003", "000001")]})
    blurry = sorted((root / "RealBlur" / REALBLUR_J).glob("scene*/blur/*.png"))[:2]
    make_real_lolblur(root / "Real-LOLBlur", own=4, copied_from=blurry)
    return root
