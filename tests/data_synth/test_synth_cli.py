from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth_helpers import textured_image

from demoe.cli import main
from demoe.config import TASK_NAMES
from demoe.data.manifest import read_manifest
from demoe.imageio import read_array


@pytest.fixture
def sharp_dir(tmp_path) -> Path:
    folder = tmp_path / "sharp"
    (folder / "set").mkdir(parents=True)
    Image.fromarray((textured_image(60, 70, seed=1) * 255).round().astype(np.uint8)).save(folder / "a.png")
    gray = (textured_image(50, 40, seed=2)[..., 0] * 255).round().astype(np.uint8)
    Image.fromarray(gray).save(folder / "set" / "b.jpg")
    return folder


def test_synth_writes_the_tree_and_a_valid_manifest(sharp_dir, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["data", "synth", str(sharp_dir), str(out), "--per-image", "2", "--seed", "3"])
    assert status == 0
    records = read_manifest(out / "manifest.jsonl")
    assert len(records) == 2 * 2 * len(TASK_NAMES)
    assert {record.task for record in records} == set(TASK_NAMES)
    assert {record.dataset for record in records} == {"synthetic"}
    assert {record.split for record in records} == {"train"}
    for record in records:
        blurry, sharp = Path(record.blurry), Path(record.sharp)
        assert blurry.parent == out / record.task / "blur" and sharp.parent == out / record.task / "sharp"
        assert blurry.name == sharp.name and blurry.name[:-8] in ("a", "set_b")  # NAME_000.png
        pixels, target = read_array(blurry), read_array(sharp)
        assert pixels.shape == target.shape and pixels.shape[2] == 3 and pixels.dtype == np.uint8
        assert pixels.shape[:2] in ((60, 70), (50, 40))  # --crop 0: full photographs
        if record.task == "local_motion":
            mask = read_array(record.mask)
            assert mask.shape == pixels.shape[:2] and set(np.unique(mask)) <= {0, 255}
            assert (mask == 0).any() and (mask == 255).any()
        else:
            assert record.mask is None
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert all('"blurry": "' + task in "".join(lines) for task in TASK_NAMES)  # relative paths
    assert not list(out.rglob(".*"))  # no temporary files left behind
    assert "wrote 20 pairs" in capsys.readouterr().out


def test_synth_is_deterministic_and_honours_crop_tasks_split(sharp_dir, tmp_path):
    arguments = ["--seed", "7", "--crop", "32", "--tasks", "defocus", "low_light", "--split", "val"]
    for name in ("first", "second"):
        assert main(["data", "synth", str(sharp_dir), str(tmp_path / name), *arguments]) == 0
    first = read_manifest(tmp_path / "first" / "manifest.jsonl")
    second = read_manifest(tmp_path / "second" / "manifest.jsonl")
    assert [record.task for record in first] == ["defocus", "low_light"] * 2
    assert {record.split for record in first} == {"val"}
    assert sorted(path.name for path in (tmp_path / "first").iterdir()) == ["defocus", "low_light", "manifest.jsonl"]
    for one, other in zip(first, second):
        blurry = read_array(one.blurry)
        assert blurry.shape == (32, 32, 3)
        np.testing.assert_array_equal(blurry, read_array(other.blurry))
    assert main(["data", "synth", str(sharp_dir), str(tmp_path / "third"), "--seed", "8", *arguments[2:]]) == 0
    third = read_manifest(tmp_path / "third" / "manifest.jsonl")
    assert not np.array_equal(read_array(first[0].blurry), read_array(third[0].blurry))


def test_synth_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "synth", str(empty), str(tmp_path / "out")]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["data", "synth", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["data", "synth", str(empty), str(tmp_path / "out"), "--per-image", "0"]) == 2
    assert "--per-image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "synth", str(empty), str(tmp_path / "out"), "--tasks", "rain"])
