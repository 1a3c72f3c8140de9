from pathlib import Path

import numpy as np
import pytest
from benchmark_trees import (
    REALBLUR_J,
    make_dpdd,
    make_gopro,
    make_lolblur,
    make_real_lolblur,
    make_realblur,
    make_realdof,
    make_reloblur,
    make_rsblur,
)

from demoe.data.sources import (
    DatasetLayoutError,
    locate_dataset,
    read_dpdd,
    read_gopro,
    read_lolblur,
    read_real_lolblur,
    read_realblur_j,
    read_realdof,
    read_reloblur,
    read_rsblur,
)
from demoe.imageio import read_array, read_rgb_float


def test_gopro_pairs_frames_by_name_per_split(tmp_path):
    root = make_gopro(tmp_path / "GOPRO_Large", train={"GOPR0372_07_00": 3, "GOPR0374_11_00": 2}, test={"GOPR0384_11_00": 2})
    records = read_gopro(root)
    assert [(r.split, r.task, r.dataset) for r in records].count(("train", "synth_global_motion", "GoPro")) == 5
    assert sum(r.split == "test" for r in records) == 2
    first = records[0]
    assert first.blurry.endswith("train/GOPR0372_07_00/blur/000047.png")  # frames need not start at 1
    assert first.sharp.endswith("train/GOPR0372_07_00/sharp/000047.png")
    gamma = read_gopro(root, splits=("test",), blur_folder="blur_gamma")
    assert all("/blur_gamma/" in r.blurry for r in gamma) and len(gamma) == 2
    with pytest.raises(ValueError, match="blur_folder"):
        read_gopro(root, blur_folder="input")


def test_gopro_errors_name_the_missing_folder_or_frame(tmp_path):
    root = make_gopro(tmp_path / "GOPRO_Large", train={"GOPR0372_07_00": 2}, test={})
    with pytest.raises(DatasetLayoutError, match=r"GOPRO_Large/test .*sequence"):
        read_gopro(root)
    (root / "train" / "GOPR0372_07_00" / "blur" / "000048.png").unlink()
    with pytest.raises(DatasetLayoutError, match="000048.png"):
        read_gopro(root, splits=("train",))
    with pytest.raises(DatasetLayoutError, match="GOPRO_Large folder"):
        read_gopro(tmp_path / "nowhere")


def test_realblur_reads_official_lists_gt_first_with_trailing_spaces(tmp_path):
    root = make_realblur(tmp_path / "RealBlur", train={1: 10, 3: 2}, test={2: 2})
    text = (root / "RealBlur_J_train_list.txt").read_text()
    assert text.splitlines()[0].endswith(".png ") and not text.endswith("\n")  # like the release
    records = read_realblur_j(root)
    train = [r for r in records if r.split == "train"]
    assert len(train) == 12 and sum(r.split == "test" for r in records) == 2
    assert all(r.task == "global_motion" and r.dataset == "RealBlur-J" for r in records)
    assert train[0].blurry.endswith(f"{REALBLUR_J}/scene001/blur/blur_1.png")
    assert train[0].sharp.endswith(f"{REALBLUR_J}/scene001/gt/gt_1.png")
    assert [Path(r.blurry).name for r in train[:10]][-1] == "blur_10.png"  # list order kept


def test_realblur_lists_may_be_in_datalist_and_missing_list_is_explained(tmp_path):
    root = make_realblur(tmp_path / "RealBlur", train={1: 1}, test={2: 1}, lists_in="datalist")
    assert len(read_realblur_j(root)) == 2
    (root / "datalist" / "RealBlur_J_test_list.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"RealBlur_J_test_list.txt .*SRN-Deblur"):
        read_realblur_j(root)


def test_realblur_reports_images_missing_from_a_list(tmp_path):
    root = make_realblur(tmp_path / "RealBlur", train={1: 2}, test={2: 1})
    (root / REALBLUR_J / "scene001" / "blur" / "blur_2.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 images listed in .*blur_2.png"):
        read_realblur_j(root)


def test_rsblur_resolves_listed_paths_inside_the_folder_whatever_its_name(tmp_path):
    splits = {"train": [("0001", "000001")], "val": [("0001", "000002")], "test": [("0002", "000001"), ("0003", "000001")]}
    root = make_rsblur(tmp_path / "RSBlur", splits)
    renamed = root.rename(tmp_path / "rsblur_download")
    test = read_rsblur(renamed)
    assert len(test) == 2 and {r.split for r in test} == {"test"}
    assert test[0].blurry == str(renamed / "0002" / "000001" / "real_blur" / "real_blur.png")
    assert test[0].sharp == str(renamed / "0002" / "000001" / "gt" / "gt_sharp.png")
    assert [r.split for r in read_rsblur(renamed, splits=("train", "val", "test"))] == ["train", "val", "test", "test"]
    (renamed / "datalist" / "RSBlur" / "RSBlur_real_test.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"RSBlur_real_test.txt .*rimchang/RSBlur"):
        read_rsblur(renamed)


def test_reloblur_pairs_and_masks(tmp_path):
    root = make_reloblur(tmp_path / "ReLoBlur", train={"s01": 3, "s09": 2}, test={"scene1": 2})
    (root / "masks" / "train" / "s09" / "00" / "01.png").write_bytes(b"")  # empty mask, as reported upstream
    (root / "masks" / "train" / "s01" / "00" / "02.png").unlink()
    records = read_reloblur(root)
    train = [r for r in records if r.split == "train"]
    assert len(train) == 5 and sum(r.split == "test" for r in records) == 2
    assert all(r.task == "local_motion" for r in records)
    assert train[0].blurry.endswith("dataset/train/s01/00/00_blur.png")
    assert train[0].mask.endswith("masks/train/s01/00/00.png")
    assert [r.mask is None for r in train] == [False, False, True, False, True]
    assert read_array(train[0].mask)[:2].min() == 255


def test_reloblur_is_tolerant_of_split_folders_at_the_top_and_of_sharp_in_the_path(tmp_path):
    root = make_reloblur(tmp_path / "sharp_downloads" / "ReLoBlur", train={"s01": 1}, test={"scene1": 1}, masks=False)
    for split in ("train", "test"):
        (root / "dataset" / split).rename(root / split)
    records = read_reloblur(root)
    assert len(records) == 2 and all(r.mask is None for r in records)
    assert "sharp_downloads" in records[0].blurry and records[0].blurry.endswith("00_blur.png")
    (root / "train" / "s01" / "00" / "00_blur.png").unlink()
    with pytest.raises(DatasetLayoutError, match="00_blur.png"):
        read_reloblur(root)
    with pytest.raises(DatasetLayoutError, match=r"NN_sharp.png.*looked for: .*dataset/test"):
        read_reloblur(tmp_path / "sharp_downloads", splits=("test",))


def test_lolblur_pairs_low_blur_noise_with_high_sharp_scaled_per_video(tmp_path):
    root = make_lolblur(tmp_path / "LOLBlur", train={"0001": [1, 2], "0002": [3, 4, 5]}, test={"0256": [6]})
    records = read_lolblur(root)
    train = [r for r in records if r.split == "train"]
    assert len(train) == 5 and len(records) == 6
    assert train[0].blurry.endswith("train/low_blur_noise/0001/0001.png")
    assert train[0].sharp.endswith("train/high_sharp_scaled/0001/0001.png")
    assert train[2].blurry.endswith("0002/0001.png")  # same frame name, other video
    assert {r.task for r in records} == {"low_light"}
    (root / "test" / "high_sharp_scaled" / "0256" / "0001.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"low_blur_noise have no file of the same name .*0256/0001.png"):
        read_lolblur(root)
    with pytest.raises(DatasetLayoutError, match="high_sharp_scaled"):
        read_lolblur(make_lolblur(tmp_path / "other", train={"0001": [1]}, test={}), splits=("test",))


def test_dpdd_pairs_by_sorted_position_and_keeps_16_bits(tmp_path):
    root = make_dpdd(tmp_path / "dd_dp_dataset_canon", {"train": 3, "val": 1, "test": 2})
    records = read_dpdd(root)
    assert [r.split for r in records] == ["train"] * 3 + ["test"] * 2  # val not read by default
    assert Path(records[0].blurry).name == "1P0A0890.png" and Path(records[0].sharp).name == "1P0A0891.png"
    assert read_array(records[0].sharp).dtype == np.uint16
    difference = read_rgb_float(records[0].blurry) - read_rgb_float(records[0].sharp)
    np.testing.assert_allclose(difference, 10 * 257 / 65535, atol=1e-6)
    assert len(read_dpdd(root, splits=("val",))) == 1
    (root / "test_c" / "target" / "1P0A0901.png").unlink()
    with pytest.raises(DatasetLayoutError, match="has 2 images but .* has 1"):
        read_dpdd(root)
    with pytest.raises(DatasetLayoutError, match=r"test_c/ with source/ and target/"):
        read_dpdd(make_dpdd(tmp_path / "partial", {"train": 1}))


def test_realdof_pairs_by_name_or_by_natural_order(tmp_path):
    same = read_realdof(make_realdof(tmp_path / "a", 12))
    assert len(same) == 12 and {r.task for r in same} == {"defocus"} and {r.split for r in same} == {"test"}
    assert [Path(r.blurry).name for r in same] == [Path(r.sharp).name for r in same]
    assert Path(same[1].blurry).name == "realdof_2.png"
    other = read_realdof(make_realdof(tmp_path / "b", 12, target_names="gt"))
    assert [(Path(r.blurry).stem[8:], Path(r.sharp).stem[3:]) for r in other] == [(str(i), str(i)) for i in range(1, 13)]
    with pytest.raises(DatasetLayoutError, match=r"missing folder .*b/target/source \(expected the defocused"):
        read_realdof(tmp_path / "b" / "target")


def test_real_lolblur_leaves_out_the_realblur_subset(tmp_path):
    realblur = make_realblur(tmp_path / "RealBlur", train={1: 3}, test={2: 2})
    copied = sorted((realblur / REALBLUR_J).glob("scene*/blur/*.png"))[:3]
    root = make_real_lolblur(tmp_path / "Real-LOLBlur", own=4, copied_from=copied, realblur_folder=2)
    with_realblur = read_real_lolblur(root, realblur_root=realblur)
    assert len(with_realblur) == 4
    assert all(r.sharp is None and r.task == "low_light" and r.split == "test" for r in with_realblur)
    assert all(Path(r.blurry).name.startswith("night_") for r in with_realblur)
    assert len(read_real_lolblur(root)) == 7  # without RealBlur-J only the sub-folder is recognised
    with pytest.raises(DatasetLayoutError, match="no images"):
        read_real_lolblur((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_locate_dataset_uses_documented_names_alternatives_and_overrides(tmp_path):
    (tmp_path / "GOPRO_Large").mkdir()
    (tmp_path / "DPDD").mkdir()
    elsewhere = tmp_path / "x" / "lol"
    elsewhere.mkdir(parents=True)
    assert locate_dataset(tmp_path, "GoPro") == tmp_path / "GOPRO_Large"
    assert locate_dataset(tmp_path, "DPDD") == tmp_path / "DPDD"
    assert locate_dataset(tmp_path, "LOLBlur", {"LOLBlur": elsewhere}) == elsewhere
    with pytest.raises(DatasetLayoutError, match=r"LOLBlur release unpacked as .*LOLBlur"):
        locate_dataset(tmp_path, "LOLBlur")
    with pytest.raises(DatasetLayoutError, match="given as its path"):
        locate_dataset(tmp_path, "RealDOF", {"RealDOF": tmp_path / "missing"})
    with pytest.raises(ValueError, match="unknown dataset"):
        locate_dataset(tmp_path, "HIDE")
