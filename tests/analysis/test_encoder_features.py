import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import demoe
from demoe.analysis.features import (
    bottleneck_features,
    encode_records,
    load_image_tensor,
    router_probs_from_features,
    tsne_embedding,
)
from demoe.data.manifest import PairRecord
from demoe.imageio import write_rgb_float

from random_weights import randomize_



@pytest.fixture
def single_openmp_thread():
    # scikit-learn's t-SNE spins OpenMP threads; on a shared CI machine that costs seconds.
    with threadpool_limits(limits=1):
        yield


def test_encoder_path_and_router_match_the_model_forward():
    model = randomize_(demoe.create_model("demoe-tiny")).eval()
    x = torch.rand(2, 3, 21, 30)
    with torch.no_grad():
        features = bottleneck_features(model, x)
        probs = router_probs_from_features(model, features)
        expected = model(x).router_probs
    assert features.shape == (2, 32, 6, 8)  # padded to 24 x 32, then two halvings
    torch.testing.assert_close(probs, expected)


def test_load_image_tensor_downscales_the_longer_side(tmp_path):
    path = tmp_path / "wide.png"
    write_rgb_float(path, np.random.default_rng(0).random((30, 80, 3)).astype(np.float32))
    assert load_image_tensor(str(path)).shape == (1, 3, 30, 80)
    small = load_image_tensor(str(path), max_side=40)
    assert small.shape == (1, 3, 15, 40)
    assert 0.0 <= float(small.min()) and float(small.max()) <= 1.0
    with pytest.raises(ValueError, match="max_side"):
        load_image_tensor(str(path), max_side=-1)


def test_encode_records_pools_features_and_collects_router_output(tmp_path):
    rng = np.random.default_rng(1)
    records = []
    for index, (dataset, task) in enumerate([("A", "defocus"), ("A", "defocus"), ("B", "low_light")]):
        path = tmp_path / f"{index}.png"
        write_rgb_float(path, rng.random((20 + index, 24, 3)).astype(np.float32))
        records.append(PairRecord(str(path), None, task, dataset, "test"))
    model = randomize_(demoe.create_model("demoe-tiny"))
    encoded = encode_records(model, records, max_side=16)
    assert not model.training
    assert encoded.features.shape == (3, 32)
    assert encoded.router_probs.shape == (3, 5)
    np.testing.assert_allclose(encoded.router_probs.sum(axis=1), 1.0, rtol=1e-5)
    assert encoded.labels.tolist() == [0, 0, 4]
    assert encoded.datasets == ["A", "A", "B"]


def test_tsne_embedding_separates_two_clusters(single_openmp_thread):
    rng = np.random.default_rng(2)
    features = np.concatenate([rng.normal(0, 1, (10, 6)), rng.normal(8, 1, (10, 6))])
    coords = tsne_embedding(features, perplexity=30, seed=0)
    assert coords.shape == (20, 2)
    first, second = coords[:10].mean(axis=0), coords[10:].mean(axis=0)
    spread = max(coords[:10].std(axis=0).max(), coords[10:].std(axis=0).max())
    assert np.linalg.norm(first - second) > 2 * spread
    with pytest.raises(ValueError, match="at least 4"):
        tsne_embedding(features[:3])
