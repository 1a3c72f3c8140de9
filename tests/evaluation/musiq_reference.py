"""Random MUSIQ weights and test images shared by test_musiq.py and the reference generator.

`python tests/evaluation/musiq_reference.py` regenerates tests/data/musiq_reference.json: the
scores pyiqa 0.1.16's MUSIQ gives these images with these weights. It needs pyiqa's source
(not installable here: pyiqa requires torchvision) imported through a stub harness, e.g.
`PYIQA_HARNESS=/tmp/pyiqa python tests/evaluation/musiq_reference.py`, where the harness module
exposes pyiqa's `musiq_arch`. The tests only read the JSON; they never import pyiqa.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

REFERENCE_FILE = Path(__file__).parents[1] / "data" / "musiq_reference.json"

# name -> (MUSIQConfig overrides, pyiqa MUSIQ keyword arguments)
CASES = {
    "koniq-like": ({}, {}),
    "ava-like": (
        dict(hidden_size=64, mlp_dim=128, num_heads=4, num_layers=2, num_classes=10),
        dict(hidden_size=64, mlp_dim=128, num_heads=4, num_layers=2, num_class=10),
    ),
    "two-scales": (
        dict(hidden_size=48, mlp_dim=96, num_heads=3, num_layers=3, longer_sides=(160,), grid_size=6),
        dict(hidden_size=48, mlp_dim=96, num_heads=3, num_layers=3, longer_side_lengths=[160], num_scales=2,
             spatial_pos_grid_size=6),
    ),
}


def random_state_dict(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic weights of a sensible scale for every named shape (numpy's PCG64)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        if name.endswith("weight") and len(shape) >= 2:
            values = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        elif name.endswith("weight"):  # norm scales
            values = 1 + 0.2 * rng.standard_normal(shape)
        else:  # biases, embeddings, class token
            values = 0.2 * rng.standard_normal(shape)
        state[name] = torch.from_numpy(values.astype(np.float32))
    return state


def save_random_musiq(path: Path, seed: int, **config) -> Path:
    """A .pth of random weights for MUSIQConfig(**config), in pyiqa's layout (1-output head)."""
    from demoe.evaluation.musiq import MUSIQ, MUSIQConfig

    shapes = {k: v.shape for k, v in MUSIQ(MUSIQConfig(**config)).state_dict().items()}
    torch.save(random_state_dict(shapes, seed), path)
    return path


def reference_images() -> dict[str, np.ndarray]:
    """uint8 RGB images of awkward sizes: texture on smooth gradients, one very elongated."""
    rng = np.random.default_rng(7)
    images = {}
    for name, (height, width) in {"landscape": (96, 128), "portrait": (131, 97), "strip": (40, 300)}.items():
        y, x = np.mgrid[0:height, 0:width] / max(height, width)
        base = np.stack([0.5 + 0.4 * np.sin(6 * x + c) * np.cos(4 * y - c) for c in range(3)], axis=-1)
        image = np.clip(base + 0.15 * rng.standard_normal((height, width, 3)), 0, 1)
        images[name] = (image * 255).round().astype(np.uint8)
    return images


def _generate() -> None:
    sys.path.insert(0, os.environ.get("PYIQA_HARNESS", "/tmp/pyiqa"))
    import harness  # noqa: F401  (stubs torchvision, loads pyiqa's musiq_arch)

    from demoe.evaluation.musiq import MUSIQ, MUSIQConfig

    reference = {}
    for seed, (case, (ours, theirs)) in enumerate(CASES.items()):
        shapes = {k: v.shape for k, v in MUSIQ(MUSIQConfig(**ours)).state_dict().items()}
        state = random_state_dict(shapes, seed)
        pyiqa_model = harness.musiq_arch.MUSIQ(pretrained=False, **theirs).eval()
        if "head.0.weight" in pyiqa_model.state_dict():
            state = {("head.0." + k[5:] if k.startswith("head.") else k): v for k, v in state.items()}
        pyiqa_model.load_state_dict(state, strict=True)
        scores = {}
        for name, image in reference_images().items():
            x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255)[None]
            with torch.no_grad():
                scores[name] = float(pyiqa_model(x).reshape(-1)[0])
        reference[case] = {"seed": seed, "scores": scores}
        print(case, scores)
    REFERENCE_FILE.write_text(json.dumps({"pyiqa": "0.1.16", "cases": reference}, indent=1) + "\n")


if __name__ == "__main__":
    _generate()
