import math

import numpy as np
import pytest
import torch

import demoe
from demoe.analysis.similarity import (
    LAYER_TYPES,
    cka_rbf,
    compare_experts,
    compare_models,
    compared_layers,
    experts_report,
    hsic,
    layer_pearson,
    layer_type,
    mean_expert_matrix,
    pairwise_matrix,
    pearson_per_filter,
    rbf_gram,
    similarity_report,
)
from demoe.config import TASK_NAMES, baseline_of
from demoe.model import DeblurUNet, init_experts_from_baseline

from random_weights import randomize_


def test_identical_weights_give_pearson_and_cka_one():
    weight = torch.randn(16, 8, 3, 3)
    assert layer_pearson(weight, weight.clone()) == pytest.approx(1.0)
    assert cka_rbf(weight, weight.clone()) == pytest.approx(1.0)


def test_per_filter_affine_copy_gives_pearson_one():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((12, 9))
    scale = rng.uniform(0.1, 5.0, size=(12, 1))  # a > 0, a different one per filter
    shift = rng.standard_normal((12, 1))
    r = pearson_per_filter(weight, scale * weight + shift)
    np.testing.assert_allclose(r, 1.0, atol=1e-12)
    assert layer_pearson(weight, -scale * weight + shift) == pytest.approx(-1.0)


def test_independent_weights_give_pearson_near_zero():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((64, 256)), rng.standard_normal((64, 256))
    assert abs(layer_pearson(a, b)) < 0.1


def test_pearson_of_1d_weights_correlates_the_whole_vector():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson_per_filter(a, 2 * a + 1).shape == (1,)
    assert layer_pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert layer_pearson(a, a[::-1].copy()) == pytest.approx(-1.0)


def test_pearson_of_constant_filters_is_undefined():
    assert math.isnan(layer_pearson(torch.ones(8), torch.ones(8)))
    # Undefined filters are skipped in the mean.
    a = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    assert layer_pearson(a, a) == pytest.approx(1.0)


def test_pearson_matches_numpy_corrcoef():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((5, 20)), rng.standard_normal((5, 20))
    expected = [np.corrcoef(a[i], b[i])[0, 1] for i in range(5)]
    np.testing.assert_allclose(pearson_per_filter(a, b), expected, atol=1e-12)


def test_cka_is_invariant_to_isotropic_scaling_and_symmetric():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((32, 10)), rng.standard_normal((32, 6)) + 0.5
    value = cka_rbf(x, y)
    assert 0.0 <= value <= 1.0
    assert cka_rbf(7.5 * x, 0.01 * y) == pytest.approx(value, abs=1e-12)
    assert cka_rbf(y, x) == pytest.approx(value, abs=1e-12)
    assert cka_rbf(x, 3.0 * x) == pytest.approx(1.0)


def test_cka_sees_a_dependent_layer_as_more_similar_than_an_independent_one():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 16))
    noisy = x + 0.3 * rng.standard_normal(x.shape)
    independent = rng.standard_normal(x.shape)
    assert cka_rbf(x, noisy) > cka_rbf(x, independent) + 0.2


def test_hsic_matches_the_explicit_centering_formula():
    rng = np.random.default_rng(6)
    k, l = rbf_gram(rng.standard_normal((9, 4))), rbf_gram(rng.standard_normal((9, 3)))
    h = np.eye(9) - np.ones((9, 9)) / 9
    assert hsic(k, l) == pytest.approx(np.trace(k @ h @ l @ h) / 8**2)


def test_rbf_gram_uses_the_median_heuristic():
    x = np.array([[0.0], [1.0], [3.0]])
    squared = np.array([[0, 1, 9], [1, 0, 4], [9, 4, 0]], dtype=float)
    expected = np.exp(-squared / (2 * 0.5**2 * np.median(squared)))
    np.testing.assert_allclose(rbf_gram(x, threshold=0.5), expected)
    with pytest.raises(ValueError, match="threshold"):
        rbf_gram(x, threshold=0)


def test_cka_of_constant_examples_is_undefined_and_shape_errors_are_clear():
    assert math.isnan(cka_rbf(np.ones((5, 3)), np.random.default_rng(0).standard_normal((5, 3))))
    with pytest.raises(ValueError, match="same number of examples"):
        cka_rbf(np.zeros((4, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same shape"):
        pearson_per_filter(np.zeros((4, 2)), np.zeros((4, 3)))


def test_layer_typing_on_a_tiny_state_dict_covers_the_four_types():
    state = demoe.create_model("demoe-tiny").state_dict()
    layers = compared_layers(state)
    assert set(layers.values()) == set(LAYER_TYPES)
    assert layers["encoders.0.0.conv1.weight"] == "conv1x1"
    assert layers["encoders.0.0.conv5.weight"] == "conv1x1"
    assert layers["middle.0.conv2.weight"] == "conv3x3"
    assert layers["decoders.1.0.norm2.weight"] == "norm"
    assert layers["middle_moe.experts.4.sca.proj.weight"] == "sca"
    # Stem, sampling, router, biases and layer scales are not compared.
    for name in ("intro.weight", "ending.weight", "downs.0.weight", "ups.0.0.weight",
                 "router.reduce.0.weight", "encoders.0.0.conv1.bias", "encoders.0.0.beta"):
        assert name not in layers
    # Eight compared layers per NAFBlock: four 1x1 convs, conv2, two norms, the SCA projection.
    blocks = {name.rsplit(".", 2)[0] for name in layers if name.endswith("conv2.weight")}
    assert len(layers) == 8 * len(blocks)
    assert layer_type("x.conv2.weight", (8, 8, 1, 1)) is None  # a 1x1 conv2 is not a 3x3 layer


def test_compare_models_reports_every_pair_and_types():
    models = [randomize_(demoe.create_model("demoe-tiny")) for _ in range(2)]
    with torch.no_grad():  # a third model: the first one with every weight doubled
        third = demoe.create_model("demoe-tiny")
        third.load_state_dict({k: v * 2 if v.is_floating_point() else v for k, v in models[0].state_dict().items()})
    states = [models[0].state_dict(), models[1].state_dict(), third.state_dict()]
    pairs = compare_models(states, ["a", "b", "c"])
    assert [(p.a, p.b) for p in pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    scaled = pairs[1]
    for layer in scaled.layers:
        assert layer.pearson == pytest.approx(1.0) and layer.cka == pytest.approx(1.0)
    report = similarity_report(pairs, ["a", "b", "c"])
    assert set(report) == {"models", "layers", "by_type", "pairs"}
    assert set(report["by_type"]) == set(LAYER_TYPES)
    assert set(report["layers"][0]) == {"name", "type", "pearson", "cka"}
    matrix = pairwise_matrix(pairs, ["a", "b", "c"], "conv3x3", "pearson")
    assert matrix.shape == (3, 3) and matrix[0, 2] == pytest.approx(1.0) and matrix[2, 0] == matrix[0, 2]


def test_compare_models_rejects_different_architectures():
    tiny = demoe.create_model("demoe-tiny").state_dict()
    other = demoe.create_model("nafnet-tiny-router").state_dict()
    with pytest.raises(ValueError, match="architecture"):
        compare_models([tiny, other], ["a", "b"])
    with pytest.raises(ValueError, match="at least two"):
        compare_models([tiny], ["a"])


def test_experts_copied_from_a_baseline_are_identical_then_diverge():
    config = demoe.create_model("demoe-tiny").config
    baseline = randomize_(DeblurUNet(baseline_of(config)))
    model = DeblurUNet(config)
    init_experts_from_baseline(model, baseline)
    blocks = compare_experts(model.state_dict(), TASK_NAMES)
    assert [b.block for b in blocks] == ["middle_moe", "decoder_moes.0", "decoder_moes.1"]
    assert len(blocks[0].pairs) == 10
    for block in blocks:
        for pair in block.pairs:
            for layer in pair.layers:
                assert layer.pearson == pytest.approx(1.0) and layer.cka == pytest.approx(1.0)
    report = experts_report(blocks)
    assert report["layers"][0]["name"].startswith("middle_moe.experts.*.")
    assert set(report["by_type"]) == set(LAYER_TYPES)
    # Re-randomise one expert: its similarity to the others drops, the rest stay at 1.
    with torch.no_grad():
        for parameter in model.middle_moe.experts[2].parameters():
            parameter.copy_(torch.randn_like(parameter))
    blocks = compare_experts(model.state_dict(), TASK_NAMES)
    matrix = mean_expert_matrix(blocks[:1], list(TASK_NAMES), "conv1x1", "pearson")
    assert abs(matrix[0, 2]) < 0.5 and matrix[0, 1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no MoE blocks"):
        compare_experts(demoe.create_model("nafnet-tiny-router").state_dict(), TASK_NAMES)
