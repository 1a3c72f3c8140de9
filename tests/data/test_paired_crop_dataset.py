import numpy as np
import pytest
import torch

from demoe.data.datasets import PairedCropDataset, apply_crop, draw_crop, pad_to_size
from demoe.data.manifest import PairRecord, write_manifest
from demoe.imageio import read_rgb_float, write_image


def _pair(tmp_path, name, height, width, bit_depth=8, identical=False, seed=0):
    rng = np.random.default_rng(seed)
    peak, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    sharp = rng.integers(0, peak, (height, width, 3), endpoint=True).astype(dtype)
    blurry = sharp if identical else rng.integers(0, peak, (height, width, 3), endpoint=True).astype(dtype)
    write_image(tmp_path / f"{name}_blurry.png", blurry)
    write_image(tmp_path / f"{name}_sharp.png", sharp)
    return PairRecord(str(tmp_path / f"{name}_blurry.png"), str(tmp_path / f"{name}_sharp.png"), "defocus", "DPDD", "train")


def test_item_has_the_contract_shapes_types_and_label(tmp_path):
    dataset = PairedCropDataset([_pair(tmp_path, "a", 20, 30)], crop_size=16, seed=0)
    item = dataset[0]
    assert set(item) == {"blurry", "sharp", "label", "dataset"}
    assert item["blurry"].shape == item["sharp"].shape == (3, 16, 16)
    assert item["blurry"].dtype == torch.float32 and item["blurry"].is_contiguous()
    assert 0 <= item["blurry"].min() and item["blurry"].max() <= 1
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0 and item["label"].item() == 0  # defocus
    assert item["dataset"] == "DPDD" and len(dataset) == 1
    batch = torch.utils.data.default_collate([item, dataset[0]])
    assert batch["label"].shape == (2,) and batch["dataset"] == ["DPDD", "DPDD"]


def test_crop_and_flips_are_the_same_for_both_images(tmp_path):
    dataset = PairedCropDataset([_pair(tmp_path, "a", 40, 50, identical=True)], crop_size=24, seed=1)
    for epoch in range(12):
        dataset.set_epoch(epoch)
        item = dataset[0]
        assert torch.equal(item["blurry"], item["sharp"])


def test_crops_come_from_the_image_and_flips_occur(tmp_path):
    record = _pair(tmp_path, "a", 9, 11, seed=3)
    image = read_rgb_float(record.sharp)
    dataset = PairedCropDataset([record], crop_size=5, seed=0)
    seen = set()
    for epoch in range(40):
        dataset.set_epoch(epoch)
        crop = dataset[0]["sharp"].numpy().transpose(1, 2, 0)
        found = None
        for flip in range(4):
            candidate = crop[:, ::-1] if flip & 1 else crop
            candidate = candidate[::-1] if flip & 2 else candidate
            for top in range(9 - 5 + 1):
                for left in range(11 - 5 + 1):
                    if np.array_equal(image[top : top + 5, left : left + 5], candidate):
                        found = flip
        assert found is not None
        seen.add(found)
    assert seen == {0, 1, 2, 3}


def test_deterministic_in_seed_epoch_and_index(tmp_path):
    records = [_pair(tmp_path, f"p{i}", 30, 30, seed=i) for i in range(3)]
    first = PairedCropDataset(records, crop_size=8, seed=5)
    second = PairedCropDataset(records, crop_size=8, seed=5)
    second.set_epoch(2)
    second.set_epoch(1)  # resuming: only the current epoch matters
    first.set_epoch(1)
    for index in (2, 0, 1):
        assert torch.equal(first[index]["blurry"], second[index]["blurry"])
    first_crops = [first[i]["blurry"] for i in range(3)]
    first.set_epoch(2)
    assert any(not torch.equal(a, first[i]["blurry"]) for i, a in enumerate(first_crops))
    other_seed = PairedCropDataset(records, crop_size=8, seed=6)
    other_seed.set_epoch(1)
    assert any(not torch.equal(a, other_seed[i]["blurry"]) for i, a in enumerate(first_crops))


def test_16_bit_inputs_keep_their_precision(tmp_path):
    record = _pair(tmp_path, "d", 12, 12, bit_depth=16, identical=True, seed=2)
    item = PairedCropDataset([record], crop_size=12, seed=0)[0]
    values = np.unique(item["sharp"].numpy())
    assert len(values) > 256  # more levels than an 8-bit image can hold
    expected = np.sort(np.unique(read_rgb_float(record.sharp)))
    np.testing.assert_allclose(np.sort(values), expected, rtol=0, atol=1e-7)


def test_small_images_are_reflect_padded(tmp_path):
    record = _pair(tmp_path, "s", 5, 7, identical=True)
    item = PairedCropDataset([record], crop_size=12, seed=0)[0]
    assert item["blurry"].shape == (3, 12, 12) and torch.equal(item["blurry"], item["sharp"])
    image = np.arange(3 * 4, dtype=np.float32).reshape(3, 4, 1)
    padded = pad_to_size(image, 6)
    assert padded.shape == (6, 6, 1)
    np.testing.assert_array_equal(padded[1:4, 1:5], image)  # the image sits in the middle
    np.testing.assert_array_equal(padded[0], padded[2])  # mirrored about the border row
    assert pad_to_size(np.zeros((1, 1, 3)), 4).shape == (4, 4, 3)
    assert pad_to_size(image, 2) is image


def test_apply_crop_uses_the_drawn_parameters():
    image = np.arange(6 * 8, dtype=np.float32).reshape(6, 8, 1)
    np.testing.assert_array_equal(apply_crop(image, (0.0, 0.0, False, False), 3), image[:3, :3])
    np.testing.assert_array_equal(apply_crop(image, (0.999, 0.999, False, False), 3), image[3:, 5:])
    np.testing.assert_array_equal(apply_crop(image, (0.0, 0.0, True, True), 3), image[:3, :3][::-1, ::-1])
    top, left, horizontal, vertical = draw_crop(np.random.default_rng([0, 0, 0]))
    assert 0 <= top < 1 and 0 <= left < 1 and isinstance(horizontal, bool) and isinstance(vertical, bool)


def test_errors(tmp_path):
    record = _pair(tmp_path, "a", 8, 8)
    with pytest.raises(ValueError, match="no sharp image"):
        PairedCropDataset([PairRecord("x.png", None, "low_light", "Real-LOLBlur", "test")])
    with pytest.raises(ValueError, match="crop_size"):
        PairedCropDataset([record], crop_size=0)
    with pytest.raises(IndexError):
        PairedCropDataset([record])[1]
    with pytest.raises(ValueError, match="epoch"):
        PairedCropDataset([record]).set_epoch(-1)
    other = _pair(tmp_path, "b", 8, 9)
    mismatched = PairRecord(record.blurry, other.sharp, "defocus", "DPDD", "train")
    with pytest.raises(ValueError, match="one size"):
        PairedCropDataset([mismatched], crop_size=4)[0]


def test_from_manifest_selects_a_split(tmp_path):
    train = _pair(tmp_path, "a", 8, 8)
    test = PairRecord(train.blurry, train.sharp, "defocus", "DPDD", "test")
    manifest = write_manifest(tmp_path / "m.jsonl", [train, train, test])
    assert len(PairedCropDataset.from_manifest(manifest, crop_size=4)) == 2
    assert len(PairedCropDataset.from_manifest(manifest, split="test", crop_size=4)) == 1
    with pytest.raises(ValueError, match="no records of split 'val'"):
        PairedCropDataset.from_manifest(manifest, split="val")
