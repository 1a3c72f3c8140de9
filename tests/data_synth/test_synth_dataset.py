from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synth_helpers import textured_image

from demoe.config import TASK_NAMES
from demoe.data.synthetic import (
    SynthConfig,
    SyntheticBlurDataset,
    load_photo,
    sharp_image_paths,
    shipped_photo_paths,
    synthesize_crop,
)


def _save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def photo_paths(tmp_path) -> list[Path]:
    color = (textured_image(150, 170, seed=1) * 255).round().astype(np.uint8)
    gray = (textured_image(160, 140, seed=2)[..., 1] * 255).round().astype(np.uint8)  # single channel
    tiny = (textured_image(20, 30, seed=3) * 255).round().astype(np.uint8)  # needs upsampling
    return [
        _save(tmp_path / "photos" / "color.png", color),
        _save(tmp_path / "photos" / "gray.png", gray),
        _save(tmp_path / "photos" / "tiny.jpg", tiny),
    ]


def test_items_have_the_training_layout(photo_paths):
    dataset = SyntheticBlurDataset(photo_paths, crop_size=48, seed=3)
    assert len(dataset) == len(photo_paths) * len(TASK_NAMES)
    for index in range(len(dataset)):
        item = dataset[index]
        assert set(item) == {"blurry", "sharp", "label", "dataset"}
        assert item["blurry"].shape == item["sharp"].shape == (3, 48, 48)
        assert item["blurry"].dtype == item["sharp"].dtype == torch.float32
        assert 0.0 <= item["blurry"].min() and item["blurry"].max() <= 1.0
        assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
        assert item["label"].item() == index % len(TASK_NAMES)  # tasks in TASK_NAMES order
        assert item["dataset"] == "synthetic"


def test_labels_index_task_names_for_a_subset_of_tasks(photo_paths):
    dataset = SyntheticBlurDataset(photo_paths, crop_size=32, tasks=("low_light", "defocus"), length=4)
    labels = [dataset[index]["label"].item() for index in range(4)]
    assert labels == [TASK_NAMES.index("low_light"), TASK_NAMES.index("defocus")] * 2


def test_deterministic_in_seed_epoch_and_index(photo_paths):
    first = SyntheticBlurDataset(photo_paths, crop_size=32, seed=5)
    second = SyntheticBlurDataset(photo_paths, crop_size=32, seed=5)
    for index in (0, 7, 14):
        assert torch.equal(first[index]["blurry"], second[index]["blurry"])
    reference = first[3]["blurry"].clone()
    _ = first[4], first[2]  # access order does not matter
    assert torch.equal(first[3]["blurry"], reference)
    first.set_epoch(1)
    assert not torch.equal(first[3]["blurry"], reference)
    first.set_epoch(0)
    assert torch.equal(first[3]["blurry"], reference)
    other_seed = SyntheticBlurDataset(photo_paths, crop_size=32, seed=6)
    assert not torch.equal(other_seed[3]["blurry"], reference)


def test_sharp_target_is_an_unblurred_crop_of_the_photograph(tmp_path):
    # Pixel values encode their coordinates: red = column, green = row.
    rows, columns = np.mgrid[0:120, 0:140]
    coded = np.stack([columns, rows, np.full_like(rows, 128)], axis=2).astype(np.uint8)
    path = _save(tmp_path / "coded.png", coded)
    dataset = SyntheticBlurDataset([path], crop_size=40, tasks=("global_motion",), length=8)
    for index in range(8):
        sharp = np.round(dataset[index]["sharp"].numpy().transpose(1, 2, 0) * 255).astype(int)
        red, green = sharp[..., 0], sharp[..., 1]
        # Each column has one red value, each row one green value, stepping by exactly 1
        # (forwards, or backwards when flipped).
        assert (red == red[:1]).all() and (green == green[:, :1]).all()
        assert abs(np.diff(red[0])).tolist() == [1] * 39 and abs(np.diff(green[:, 0])).tolist() == [1] * 39


def test_crop_is_the_centre_of_the_blurred_region():
    # A photograph exactly as large as the crop plus its margin is blurred whole; the pair is
    # its centre, where no mirrored border content can reach.
    config = SynthConfig()
    margin = config.margin_px("defocus", 32)
    photo = textured_image(32 + 2 * margin, 32 + 2 * margin, seed=4)
    sample = synthesize_crop(photo, "defocus", np.random.default_rng(0), 32, config, flips=False)
    assert sample.blurry.shape == (32, 32, 3)
    np.testing.assert_array_equal(sample.sharp, photo[margin:-margin, margin:-margin])


def test_grayscale_and_tiny_photographs(photo_paths):
    for path in photo_paths[1:]:
        dataset = SyntheticBlurDataset([path], crop_size=64)
        for index in range(len(dataset)):
            item = dataset[index]
            assert item["blurry"].shape == (3, 64, 64)
    gray_item = SyntheticBlurDataset([photo_paths[1]], crop_size=64)[0]
    assert torch.equal(gray_item["sharp"][0], gray_item["sharp"][2])


def test_photos_are_cached(photo_paths):
    dataset = SyntheticBlurDataset(photo_paths, crop_size=32)
    dataset[0]
    photo_paths[0].unlink()  # already decoded: still usable
    assert dataset[5]["blurry"].shape == (3, 32, 32)


def test_argument_errors(photo_paths):
    with pytest.raises(TypeError, match="sharp_image_paths"):
        SyntheticBlurDataset(str(photo_paths[0].parent))
    with pytest.raises(ValueError, match="empty"):
        SyntheticBlurDataset([])
    with pytest.raises(ValueError, match="tasks"):
        SyntheticBlurDataset(photo_paths, tasks=("rain",))
    with pytest.raises(ValueError, match="crop_size"):
        SyntheticBlurDataset(photo_paths, crop_size=0)
    with pytest.raises(IndexError):
        SyntheticBlurDataset(photo_paths, length=3)[3]


def test_sharp_image_paths(tmp_path, photo_paths):
    folder = photo_paths[0].parent
    _save(folder / "nested" / "deep.bmp", np.zeros((4, 4, 3), np.uint8))
    _save(folder / ".hidden" / "skip.png", np.zeros((4, 4, 3), np.uint8))
    _save(folder / ".skip.png", np.zeros((4, 4, 3), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    names = [path.relative_to(folder).as_posix() for path in sharp_image_paths(folder)]
    assert names == ["color.png", "gray.png", "nested/deep.bmp", "tiny.jpg"]
    assert [p.name for p in sharp_image_paths(folder, recursive=False)] == ["color.png", "gray.png", "tiny.jpg"]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        sharp_image_paths(tmp_path / "missing")


def test_shipped_photographs():
    paths = shipped_photo_paths()
    assert len(paths) >= 6
    assert sum(path.stat().st_size for path in paths) < 500_000
    readme = (paths[0].parent / "README.md").read_text()
    for path in paths:
        assert path.name in readme  # every photograph has its source and licence listed
        height, width = load_photo(path).shape[:2]
        assert 160 <= min(height, width) and max(height, width) <= 256
    item = SyntheticBlurDataset(paths, crop_size=64)[0]
    assert item["blurry"].shape == (3, 64, 64)
