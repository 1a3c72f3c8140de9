"""LPIPS v0.1 (Zhang et al. 2018) with AlexNet or VGG16 features, without torchvision.

The linear calibration layers of LPIPS v0.1 ship with demoe (`assets/lpips_{alex,vgg}_v0.1.pth`,
BSD-2-Clause, from the `lpips` package). The ImageNet backbones do not: they are read from a
file the user points to, or from the local torch hub cache (`$TORCH_HOME/hub/checkpoints`, see
`torch.hub.get_dir()`), under torchvision's file names. Nothing is ever downloaded; without the
file, `LPIPSBackboneNotFoundError` says where to put it.

The feature extractors below are torchvision's `alexnet().features` and `vgg16().features`
with the same module indices, so torchvision state dicts (`features.0.weight`, ...) load as they
are. LPIPS taps the ReLU outputs that end torchvision's slices: AlexNet relu1..relu5, VGG16
relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.

Example (needs the AlexNet file):
    >>> metric = load_lpips("alex", backbone="alexnet-owt-7be5be79.pth")  # doctest: +SKIP
    >>> lpips_distance(restored, sharp, metric)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from demoe.checkpoints import load_torch_file
from demoe.imageio import to_float

NetName = Literal["alex", "vgg"]
NETS: tuple[str, ...] = ("alex", "vgg")

# torchvision's file names of the ImageNet weights (as in its download URLs and hub cache).
BACKBONE_FILES: dict[str, str] = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LINEAR_WEIGHTS: dict[str, Path] = {
    net: Path(__file__).parent / "assets" / f"lpips_{net}_v0.1.pth" for net in NETS
}
# Index of the last module of each tapped slice in torchvision's `features`.
_TAPS: dict[str, tuple[int, ...]] = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
_CHANNELS: dict[str, tuple[int, ...]] = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# LPIPS v0.1 input scaling: inputs in [-1, 1] are shifted and scaled per channel.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPSBackboneNotFoundError(FileNotFoundError):
    """The ImageNet backbone weights LPIPS needs are not on disk (they are never downloaded)."""


def alexnet_features() -> nn.Sequential:
    """torchvision's `alexnet().features[:12]` (the last max-pool is not used by LPIPS)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
        nn.ReLU(),  # 1 -> relu1
        nn.MaxPool2d(kernel_size=3, stride=2),  # 2
        nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
        nn.ReLU(),  # 4 -> relu2
        nn.MaxPool2d(kernel_size=3, stride=2),  # 5
        nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
        nn.ReLU(),  # 7 -> relu3
        nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
        nn.ReLU(),  # 9 -> relu4
        nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
        nn.ReLU(),  # 11 -> relu5
    )


def vgg16_features() -> nn.Sequential:
    """torchvision's `vgg16().features[:30]` (configuration D, no batch norm, last pool dropped)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = item
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS distance. forward(x, y): (B, 3, H, W) float in [0, 1] each -> (B,) distances >= 0
    (0 for identical images; about 0.1 is a visible difference)."""

    def __init__(self, net: NetName = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"unknown LPIPS network {net!r}; expected one of {NETS}")
        self.net = net
        self.features = alexnet_features() if net == "alex" else vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _CHANNELS[net])
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS[self.net]:
                outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected two (B, 3, H, W) tensors of the same shape, got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        x = ((2 * x - 1) - self.shift) / self.scale
        y = ((2 * y - 1) - self.shift) / self.scale
        total = x.new_zeros(x.shape[0])
        for lin, feature_x, feature_y in zip(self.lins, self._taps(x), self._taps(y)):
            # unit-normalise over channels (eps as in LPIPS), squared difference, learned weights
            feature_x = feature_x / (feature_x.norm(dim=1, keepdim=True) + 1e-10)
            feature_y = feature_y / (feature_y.norm(dim=1, keepdim=True) + 1e-10)
            total = total + lin((feature_x - feature_y) ** 2).mean(dim=(1, 2, 3))  # (B,)
        return total


def find_backbone(net: NetName, path: str | os.PathLike | None = None) -> Path:
    """The backbone weight file: `path` if given (it must exist), else torchvision's file name in
    the torch hub cache. Raises LPIPSBackboneNotFoundError with instructions otherwise."""
    if net not in NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; expected one of {NETS}")
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise LPIPSBackboneNotFoundError(f"LPIPS-{net} backbone weights not found: {path} is not a file")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
    if cached.is_file():
        return cached
    raise LPIPSBackboneNotFoundError(
        f"LPIPS-{net} needs torchvision's ImageNet weights {BACKBONE_FILES[net]}, which demoe never "
        f"downloads. Pass the file (--lpips-backbone FILE, or backbone=...) or copy it to {cached}."
    )


def _backbone_state_dict(state: Mapping[str, torch.Tensor], net: NetName) -> dict[str, torch.Tensor]:
    """torchvision layout (`features.N.weight`, classifier ignored) or bare `N.weight` keys."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    features = {}
    for key, tensor in state.items():
        if key.startswith("features."):
            features[key.removeprefix("features.")] = tensor
        elif key.split(".", 1)[0].isdigit():
            features[key] = tensor
    if not features:
        raise ValueError(f"no backbone weights (keys 'features.N.weight') in the LPIPS-{net} file")
    return features


def load_lpips(
    net: NetName = "alex",
    backbone: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPS:
    """LPIPS v0.1 with the shipped linear layers and the backbone from `backbone` (a file, a state
    dict, or None for the torch hub cache). Raises LPIPSBackboneNotFoundError if it is missing,
    and a ValueError if it is unreadable, holds objects other than weights (a file from
    elsewhere runs no code: `demoe.checkpoints.load_torch_file`) or has another layout."""
    model = LPIPS(net)
    if backbone is None or isinstance(backbone, (str, os.PathLike)):
        state = load_torch_file(find_backbone(net, backbone))
        if not isinstance(state, Mapping):
            raise ValueError(f"LPIPS-{net} backbone file holds a {type(state).__name__}, not a state dict")
    else:
        state = backbone
    features = _backbone_state_dict(state, net)
    expected = {key: tuple(tensor.shape) for key, tensor in model.features.state_dict().items()}
    found = {key: tuple(tensor.shape) for key, tensor in features.items()}
    if found != expected:
        wrong = sorted(key for key in expected.keys() | found.keys() if expected.get(key) != found.get(key))
        raise ValueError(
            f"LPIPS-{net} backbone does not match torchvision's {net} layout; differing keys "
            f"(expected vs found shape): "
            + ", ".join(f"{key}: {expected.get(key)} vs {found.get(key)}" for key in wrong[:5])
        )
    model.features.load_state_dict(features)
    linear = torch.load(LINEAR_WEIGHTS[net], map_location="cpu", weights_only=True)
    # The lpips package names them lin{i}.model.1.weight (dropout at .0); here lins.{i}.weight.
    model.lins.load_state_dict({f"{i}.weight": linear[f"lin{i}.model.1.weight"] for i in range(len(model.lins))})
    return model.to(device)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(to_float(np.asarray(image)).transpose(2, 0, 1)))[None]


@torch.no_grad()
def lpips_distance(restored: np.ndarray, sharp: np.ndarray, model: LPIPS) -> float:
    """LPIPS between two (H, W, 3) images (uint8, uint16 or float in [0, 1])."""
    if np.shape(restored) != np.shape(sharp):
        raise ValueError(f"restored and sharp differ in shape: {np.shape(restored)} vs {np.shape(sharp)}")
    device = next(model.parameters()).device
    return float(model(_to_tensor(restored).to(device), _to_tensor(sharp).to(device))[0])
