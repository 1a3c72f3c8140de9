import numpy as np
import pytest

from demoe.evaluation.router import (
    accuracy,
    accuracy_per_dataset,
    confusion_matrix,
    mean_output_per_dataset,
    router_study,
)

CLASSES = ("a", "b", "c")
# Six images of two datasets; predictions (arg-max) are a, b, b | c, c, a.
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.6, 0.1],
        [0.0, 0.1, 0.9],
        [0.2, 0.2, 0.6],
        [0.5, 0.4, 0.1],
    ]
)
LABELS = np.array([0, 1, 0, 2, 2, 2])
DATASETS = ["X", "X", "X", "Y", "Y", "Y"]


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(confusion_matrix(PROBS, LABELS), expected)
    assert confusion_matrix(PROBS, LABELS).sum() == len(LABELS)


def test_accuracy_overall_and_per_dataset():
    assert accuracy(PROBS, LABELS) == pytest.approx(4 / 6)
    assert accuracy_per_dataset(PROBS, LABELS, DATASETS) == pytest.approx({"X": 2 / 3, "Y": 2 / 3})


def test_mean_output_per_dataset_keeps_first_appearance_order():
    means = mean_output_per_dataset(PROBS, ["Y", "X", "Y", "X", "X", "Y"])
    assert list(means) == ["Y", "X"]
    np.testing.assert_allclose(means["Y"], PROBS[[0, 2, 5]].mean(axis=0))
    np.testing.assert_allclose(means["X"].sum(), 1.0)


def test_router_study_json_and_markdown():
    study = router_study(PROBS, LABELS, DATASETS, CLASSES)
    data = study.to_dict()
    assert data["overall_accuracy"] == pytest.approx(4 / 6)
    assert [d["dataset"] for d in data["datasets"]] == ["X", "Y"]
    assert data["datasets"][1]["count"] == 3
    assert data["datasets"][0]["mean_output"]["b"] == pytest.approx((0.2 + 0.8 + 0.6) / 3)
    assert data["confusion"]["matrix"][2] == [1, 0, 2]
    text = study.to_markdown()
    assert "| X | 3 | 0.667 |" in text
    assert "| c | 1 | 0 | 2 |" in text


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="labels must be"):
        confusion_matrix(PROBS, LABELS[:3])
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        confusion_matrix(PROBS, np.array([0, 1, 2, 3, 0, 0]))
    with pytest.raises(TypeError, match="integer"):
        accuracy(PROBS, LABELS.astype(float))
    with pytest.raises(ValueError, match="class names"):
        router_study(PROBS, LABELS, DATASETS, ("a", "b"))
