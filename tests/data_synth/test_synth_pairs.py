"""`demoe.data.synthetic.pairs`, the library behind `demoe data synth`, called directly."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth_helpers import textured_image

from demoe.config import TASK_NAMES
from demoe.data.manifest import read_manifest
from demoe.data.synthetic.pairs import PairSettings, photo_names, shrink, write_pairs, write_synthetic_set
from demoe.imageio import read_array


def _save(path: Path, height: int, width: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((textured_image(height, width, seed=seed) * 255).round().astype(np.uint8)).save(path)
    return path


def test_write_synthetic_set_writes_pairs_and_their_manifest(tmp_path):
    _save(tmp_path / "sharp" / "a.png", 40, 44, 1)
    _save(tmp_path / "sharp" / "set" / "b.png", 36, 30, 2)
    settings = PairSettings(tasks=("defocus", "local_motion"), per_image=2, seed=5, split="val")
    written = write_synthetic_set(tmp_path / "sharp", tmp_path / "out", settings, progress=False)
    assert written.photos == 2 and written.manifest == tmp_path / "out" / "manifest.jsonl"
    assert read_manifest(written.manifest) == written.records
    assert [(Path(r.blurry).name, r.task) for r in written.records[:4]] == [
        ("a_000.png", "defocus"), ("a_000.png", "local_motion"), ("a_001.png", "defocus"), ("a_001.png", "local_motion")
    ]
    assert {r.split for r in written.records} == {"val"} and len(written.records) == 2 * 2 * 2
    for record in written.records:
        assert read_array(record.blurry).shape == read_array(record.sharp).shape
        assert (record.mask is not None) == (record.task == "local_motion")
    assert not list((tmp_path / "out").rglob(".*"))  # atomic writes leave no temporary file


def test_a_pair_does_not_depend_on_the_other_tasks_chosen(tmp_path):
    paths = [_save(tmp_path / "a.png", 32, 32, 3)]
    alone = write_pairs(paths, ["a"], tmp_path / "alone", PairSettings(tasks=("low_light",), seed=2), progress=False)
    every = write_pairs(paths, ["a"], tmp_path / "every", PairSettings(seed=2), progress=False)
    assert [r.task for r in every] == list(TASK_NAMES)
    low_light = next(r for r in every if r.task == "low_light")
    np.testing.assert_array_equal(read_array(alone[0].blurry), read_array(low_light.blurry))
    other_seed = write_pairs(paths, ["a"], tmp_path / "seed3", PairSettings(tasks=("low_light",), seed=3), progress=False)
    assert not np.array_equal(read_array(alone[0].blurry), read_array(other_seed[0].blurry))


def test_names_settings_and_shrink_are_checked(tmp_path):
    sharp = tmp_path / "sharp"
    paths = [_save(sharp / "x" / "a.png", 8, 8, 0), _save(sharp / "x_a.jpg", 8, 8, 0)]
    with pytest.raises(ValueError, match="same output name"):
        photo_names(sharp, paths)
    assert photo_names(sharp, paths[:1]) == ["x_a"]
    for settings, message in (
        (dict(per_image=0), "per_image must be >= 1, got 0"),
        (dict(tasks=("rain",)), "tasks must be a non-empty subset"),
        (dict(split="dev"), "split must be one of"),
        (dict(crop=-1), "crop must be >= 0"),
    ):
        with pytest.raises(ValueError, match=message):
            PairSettings(**settings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        write_synthetic_set(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        write_synthetic_set(tmp_path / "missing", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    photo = np.zeros((30, 60, 3), np.uint8)
    assert shrink(photo, 20).shape == (10, 20, 3) and shrink(photo, 0) is photo and shrink(photo, 60) is photo
