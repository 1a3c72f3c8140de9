"""NRQM: parity with pyiqa's implementation (features and scores recorded in tests/data by
tests/data/make_nrqm_reference.py with a synthetic model), the regression forests, weight
loading and its errors, input handling. pyiqa is not imported here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from demoe.evaluation.nrqm import (
    FEATURE_SIZES,
    NRQMModel,
    RegressionForest,
    check_size,
    load_nrqm_model,
    nrqm,
    nrqm_features,
    yiq_luma,
)

DATA = Path(__file__).parents[1] / "data"
MODEL_FILE = DATA / "nrqm_synthetic_model.mat"
REFERENCE_FILE = DATA / "nrqm_reference.json"

# name -> (height, width, seed); the last one is the smallest square NRQM accepts
REFERENCE_IMAGES = {"landscape": (96, 128, 1), "portrait": (131, 97, 2), "smallest": (84, 84, 3)}


def sample_image(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour waves and gradients, a sharp-edged square, fine noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack(
        [0.45 + 0.3 * np.sin(5 * x + c + seed) * np.cos(3 * y - c) + 0.15 * (x - y) for c in range(3)], axis=-1
    )
    image[height // 4 : height // 2, width // 3 : width // 2] += 0.2
    image += 0.08 * rng.standard_normal((height, width, 3))
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def reference_images() -> dict[str, np.ndarray]:
    return {name: sample_image(*spec) for name, spec in REFERENCE_IMAGES.items()}


def image_digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE_FILE.read_text())["images"]


@pytest.fixture(scope="module")
def model() -> NRQMModel:
    return load_nrqm_model(MODEL_FILE)


# ---------------------------------------------------------------------------------------------
# parity with pyiqa


@pytest.mark.parametrize("name", list(REFERENCE_IMAGES))
def test_features_match_pyiqa(name, reference):
    expected = reference[name]
    image = sample_image(*REFERENCE_IMAGES[name])
    assert image_digest(image) == expected["image_sha256"], "sample_image changed: rerun make_nrqm_reference.py"
    luma = yiq_luma(image)
    assert image_digest(luma.astype(np.uint8)) == expected["luma_sha256"]  # pyiqa's Y, pixel for pixel
    f1, f2, f3 = nrqm_features(luma)
    assert (len(f1), len(f2), len(f3)) == FEATURE_SIZES
    # pyiqa rounds its shape grid and bicubic resize to single precision: ~1e-7 relative
    np.testing.assert_allclose(f1, expected["f1"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(f2, expected["f2"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(f3, expected["f3"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(REFERENCE_IMAGES))
def test_score_matches_pyiqa(name, reference, model):
    score = nrqm(sample_image(*REFERENCE_IMAGES[name]), model)
    assert score == pytest.approx(reference[name]["score"], rel=1e-6)  # pyiqa returns float32


def test_forests_match_pyiqa_on_its_features(reference, model):
    for expected in reference.values():
        features = [np.array(expected[f"f{g}"]) for g in (1, 2, 3)]
        predictions = [forest.predict(f)[0] for forest, f in zip(model.forests, features)]
        np.testing.assert_allclose(predictions, expected["forest_predictions"], rtol=1e-12)
        assert model.predict(features) == pytest.approx(float(np.r_[1.0, predictions] @ model.linear), rel=1e-15)
        assert model.predict(features) == pytest.approx(expected["score"], rel=1e-6)


def test_scores_differ_between_images(reference):
    # the synthetic forests split between the reference images, so the parity test means something
    assert len({round(r["score"], 6) for r in reference.values()}) == len(reference)


# ---------------------------------------------------------------------------------------------
# regression forests


def hand_written_forest() -> RegressionForest:
    """Tree 1: x2 <= 0.5 ? 1 : (x1 <= 2 ? 2 : 3). Tree 2: a single leaf 10 (rows padded with 0).
    Node arrays are (nodes, trees), daughters and features 1-based."""
    left = np.array([[2, 0], [0, 0], [4, 0], [0, 0], [0, 0]])
    right = np.array([[3, 0], [0, 0], [5, 0], [0, 0], [0, 0]])
    feature = np.array([[2, 0], [0, 0], [1, 0], [0, 0], [0, 0]])
    threshold = np.array([[0.5, 0], [0, 0], [2.0, 0], [0, 0], [0, 0]])
    value = np.array([[-100.0, 10], [1, 0], [-100, 0], [2, 0], [3, 0]])  # internal values are never used
    return RegressionForest(left=left, right=right, threshold=threshold, value=value, feature=feature)


def test_forest_traversal_by_hand():
    forest = hand_written_forest()
    features = np.array([[9.0, 0.5], [2.0, 0.6], [2.5, 7.0], [-1.0, -3.0]])
    # tree 1 gives 1 (x2 = 0.5 goes left), 2 (x1 = 2 goes left), 3, 1; tree 2 always 10
    np.testing.assert_array_equal(forest.predict(features), [5.5, 6.0, 6.5, 5.5])
    np.testing.assert_array_equal(forest.predict(np.array([0.0, 1.0])), [6.0])  # one sample as (D,)
    assert forest.num_trees == 2
    with pytest.raises(ValueError, match="splits on feature 2"):
        forest.predict(np.zeros((1, 1)))


def test_forest_rejects_mismatched_arrays():
    forest = hand_written_forest()
    with pytest.raises(ValueError, match="same \\(nodes, trees\\) shape"):
        RegressionForest(forest.left, forest.right, forest.threshold[:4], forest.value, forest.feature)


def test_malformed_forest_is_reported():
    cycle = np.array([[1]])  # node 1's daughters are node 1
    zeros = np.zeros((1, 1))
    forest = RegressionForest(left=cycle, right=cycle, threshold=zeros, value=zeros, feature=cycle)
    with pytest.raises(ValueError, match="malformed forest"):
        forest.predict(np.zeros((1, 1)))


# ---------------------------------------------------------------------------------------------
# loading the weights


def save_model(path: Path, forests: list, linear=((0.75,), (0.4,), (0.25,), (0.3,))) -> Path:
    cell = np.empty((1, len(forests)), dtype=object)
    for i, forest in enumerate(forests):
        cell[0, i] = forest
    scipy.io.savemat(path, {"model": {"linear": np.array(linear), "rf": cell}})
    return path


def synthetic_forest_fields() -> list[list[tuple[str, np.ndarray]]]:
    """The synthetic model's forests as (field name, array) lists in regRF_train's order."""
    rf = scipy.io.loadmat(MODEL_FILE)["model"][0, 0]["rf"]
    forests = []
    for i in range(3):
        struct = rf[0, i]
        forests.append([(name, struct[0, 0][name]) for name in struct.dtype.names])
    return forests


def predictions(model: NRQMModel, reference: dict) -> list[float]:
    return [model.predict([np.array(r[f"f{g}"]) for g in (1, 2, 3)]) for r in reference.values()]


def test_synthetic_model_file_is_small_and_in_regrf_layout(model):
    assert MODEL_FILE.stat().st_size < 100_000
    names = [name for name, _ in synthetic_forest_fields()[0]]
    assert names[:7] == ["lDau", "rDau", "nodestatus", "nrnodes", "upper", "avnode", "mbest"]
    assert [forest.num_trees for forest in model.forests] == [20, 20, 20]
    np.testing.assert_array_equal(model.linear, [0.75, 0.4, 0.25, 0.3])


def test_fields_are_read_by_name_in_any_order_and_case(tmp_path, model, reference):
    forests = [dict((name.upper(), array) for name, array in reversed(fields)) for fields in synthetic_forest_fields()]
    reordered = load_nrqm_model(save_model(tmp_path / "reordered.mat", forests))
    assert predictions(reordered, reference) == predictions(model, reference)


def test_fields_fall_back_to_positions(tmp_path, model, reference):
    # unknown field names: pyiqa's positions (0 lDau, 1 rDau, 4 upper, 5 avnode, 6 mbest)
    renamed = [{f"field{k}": array for k, (_, array) in enumerate(fields)} for fields in synthetic_forest_fields()]
    assert predictions(load_nrqm_model(save_model(tmp_path / "renamed.mat", renamed)), reference) == predictions(
        model, reference
    )
    # a cell array instead of a struct: positions too
    cells = []
    for fields in synthetic_forest_fields():
        cell = np.empty((1, len(fields)), dtype=object)
        for k, (_, array) in enumerate(fields):
            cell[0, k] = array
        cells.append(cell)
    assert predictions(load_nrqm_model(save_model(tmp_path / "cells.mat", cells)), reference) == predictions(
        model, reference
    )


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "NRQM_model.mat"
    with pytest.raises(FileNotFoundError, match="NRQM_model.mat .*does not ship or download it") as error:
        load_nrqm_model(missing)
    assert str(missing) in str(error.value)
    with pytest.raises(FileNotFoundError, match="does not ship or download it"):
        nrqm(sample_image(96, 96, 0), missing)


def test_not_a_mat_file(tmp_path):
    path = tmp_path / "NRQM_model.mat"
    path.write_text("this is not a MATLAB file\n" * 20)
    with pytest.raises(ValueError, match="not a MATLAB .mat file"):
        load_nrqm_model(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a MATLAB .mat file"):
        load_nrqm_model(path)


def test_wrong_mat_contents(tmp_path):
    forests = [dict(fields) for fields in synthetic_forest_fields()]
    path = tmp_path / "other.mat"
    scipy.io.savemat(path, {"weights": np.zeros(3)})
    with pytest.raises(ValueError, match="no variable 'model'.*weights"):
        load_nrqm_model(path)
    scipy.io.savemat(path, {"model": {"linear": np.zeros((4, 1))}})
    with pytest.raises(ValueError, match="struct with fields linear and rf"):
        load_nrqm_model(path)
    with pytest.raises(ValueError, match="model.linear must hold 4 numbers"):
        load_nrqm_model(save_model(path, forests, linear=((1.0,), (2.0,))))
    with pytest.raises(ValueError, match="model.rf must be a cell of 3 forests"):
        load_nrqm_model(save_model(path, forests[:2]))
    two_fields = {"lDau": forests[1]["lDau"], "rDau": forests[1]["rDau"]}
    with pytest.raises(ValueError, match=r"model.rf\{2\} has fields \['lDau', 'rDau'\]"):
        load_nrqm_model(save_model(path, [forests[0], two_fields, forests[2]]))
    broken = dict(forests[2], upper=forests[2]["upper"][:-1])
    with pytest.raises(ValueError, match=r"model.rf\{3\}: forest arrays must all have the same"):
        load_nrqm_model(save_model(path, [forests[0], forests[1], broken]))


# ---------------------------------------------------------------------------------------------
# input handling


def test_pixel_types_give_the_same_score(model):
    image = sample_image(*REFERENCE_IMAGES["landscape"])
    expected = nrqm(image, model)
    assert nrqm(image.astype(np.uint16) * 257, model) == expected
    assert nrqm(image.astype(np.float32) / 255, model) == expected
    assert nrqm(image.astype(np.float64) / 255, model) == expected
    assert nrqm(np.concatenate([image, np.full_like(image[:, :, :1], 255)], axis=2), model) == expected  # alpha
    assert nrqm(image, MODEL_FILE) == expected  # a path instead of a loaded model


def test_gray_images(model):
    gray = sample_image(*REFERENCE_IMAGES["portrait"])[:, :, 1]
    expected = nrqm(np.repeat(gray[:, :, None], 3, axis=2), model)  # Y of equal channels is the gray value
    assert nrqm(gray, model) == expected
    assert nrqm(gray[:, :, None], model) == expected
    assert nrqm(gray.astype(np.float32) / 255, model) == expected


def test_yiq_luma():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    exact = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    luma = yiq_luma(rgb)
    # pyiqa's single-precision arithmetic only matters at ties (x.5 in exact arithmetic)
    away_from_ties = np.abs(exact - np.floor(exact) - 0.5) > 1e-3
    np.testing.assert_array_equal(luma[away_from_ties], np.round(exact[away_from_ties]))
    assert np.all(np.abs(luma - exact) <= 0.5 + 1e-3)
    primaries = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    np.testing.assert_array_equal(yiq_luma(primaries), [[76, 150, 29]])
    with pytest.raises(TypeError, match="unsupported pixel type int32"):
        yiq_luma(rgb.astype(np.int32))
    with pytest.raises(ValueError, match="expected an \\(H, W\\)"):
        yiq_luma(np.zeros((8, 8, 2), np.uint8))


@pytest.mark.parametrize("height, width", [(83, 83), (44, 200), (200, 44), (45, 163)])
def test_too_small_images_are_rejected(height, width, model):
    with pytest.raises(ValueError, match="at least 45 pixels per side .*84x84"):
        nrqm(sample_image(height, width, 0), model)


@pytest.mark.parametrize("height, width", [(84, 84), (45, 164), (83, 200)])
def test_smallest_images_are_accepted(height, width):
    check_size(height, width)


def test_flat_image_is_rejected(model):
    with pytest.raises(ValueError, match="flat image"):
        nrqm(np.full((96, 96, 3), 128, np.uint8), model)
