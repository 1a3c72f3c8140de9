import numpy as np
import pytest
import torch

from demoe.evaluation.lpips import (
    BACKBONE_FILES,
    LINEAR_WEIGHTS,
    LPIPS,
    LPIPSBackboneNotFoundError,
    alexnet_features,
    find_backbone,
    load_lpips,
    lpips_distance,
    vgg16_features,
)

# Parameter shapes of torchvision's alexnet().features / vgg16().features, by state-dict key.
TORCHVISION_ALEX = {
    "features.0.weight": (64, 3, 11, 11), "features.3.weight": (192, 64, 5, 5),
    "features.6.weight": (384, 192, 3, 3), "features.8.weight": (256, 384, 3, 3),
    "features.10.weight": (256, 256, 3, 3),
}
TORCHVISION_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def random_torchvision_checkpoint(net: str, path, seed: int = 0):
    """A file in torchvision's layout (features.* and classifier.*) with random weights."""
    generator = torch.Generator().manual_seed(seed)
    features = alexnet_features() if net == "alex" else vgg16_features()
    state = {
        f"features.{key}": torch.randn(tensor.shape, generator=generator) * 0.05
        for key, tensor in features.state_dict().items()
    }
    state["classifier.1.weight"] = torch.randn(8, 4, generator=generator)  # ignored by LPIPS
    torch.save(state, path)
    return state


def test_backbones_use_torchvision_indices():
    alex = {f"features.{k}": tuple(v.shape) for k, v in alexnet_features().state_dict().items() if k.endswith("weight")}
    assert alex == TORCHVISION_ALEX
    vgg = vgg16_features().state_dict()
    assert sorted(int(k.split(".")[0]) for k in vgg if k.endswith("weight")) == list(TORCHVISION_VGG16_CONVS)
    assert tuple(vgg["28.weight"].shape) == (512, 512, 3, 3)


def test_linear_weights_are_shipped():
    for net, path in LINEAR_WEIGHTS.items():
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert sorted(state) == [f"lin{i}.model.1.weight" for i in range(5)], net
        assert all((tensor >= 0).all() for tensor in state.values())


@pytest.mark.parametrize("net, size", [("alex", 64), ("vgg", 32)])
def test_lpips_with_random_backbone_file(tmp_path, net, size):
    path = tmp_path / BACKBONE_FILES[net]
    state = random_torchvision_checkpoint(net, path)
    metric = load_lpips(net, path)
    first_conv = metric.features[0].weight
    torch.testing.assert_close(first_conv, state["features.0.weight"])
    shipped = torch.load(LINEAR_WEIGHTS[net], map_location="cpu", weights_only=True)
    torch.testing.assert_close(metric.lins[2].weight, shipped["lin2.model.1.weight"])

    rng = np.random.default_rng(0)
    image = rng.random((size, size, 3)).astype(np.float32)
    other = np.clip(image + rng.normal(0, 0.2, image.shape), 0, 1).astype(np.float32)
    assert lpips_distance(image, image, metric) == pytest.approx(0.0, abs=1e-7)
    distance = lpips_distance(other, image, metric)
    assert distance > 1e-4
    assert lpips_distance(image, other, metric) == pytest.approx(distance, rel=1e-5)
    # 8-bit input is scaled to [0, 1] first
    as_uint8 = np.round(image * 255).astype(np.uint8)
    assert lpips_distance(as_uint8, as_uint8, metric) == pytest.approx(0.0, abs=1e-7)


def test_lpips_batched_forward():
    metric = LPIPS("alex")
    x = torch.rand(2, 3, 48, 48)
    distances = metric(x, x.flip(0))
    assert distances.shape == (2,)


def test_backbone_from_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    random_torchvision_checkpoint("alex", cache / BACKBONE_FILES["alex"])
    assert find_backbone("alex") == cache / BACKBONE_FILES["alex"]
    assert isinstance(load_lpips("alex"), LPIPS)


def test_missing_backbone_is_a_clear_specific_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(LPIPSBackboneNotFoundError, match="alexnet-owt-7be5be79.pth.*never") as info:
        load_lpips("alex")
    assert str(tmp_path / "hub" / "checkpoints") in str(info.value)
    with pytest.raises(LPIPSBackboneNotFoundError, match="vgg16-397923af.pth"):
        load_lpips("vgg")
    with pytest.raises(LPIPSBackboneNotFoundError, match="not a file"):
        load_lpips("alex", tmp_path / "nothing.pth")
    assert issubclass(LPIPSBackboneNotFoundError, FileNotFoundError)


def test_wrong_backbone_layout_is_rejected(tmp_path):
    path = tmp_path / "vgg_as_alex.pth"
    random_torchvision_checkpoint("vgg", path)
    with pytest.raises(ValueError, match="does not match torchvision's alex layout.*0.weight"):
        load_lpips("alex", path)
    with pytest.raises(ValueError, match="no backbone weights"):
        load_lpips("alex", {"fc.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="unknown LPIPS network"):
        LPIPS("squeeze")
