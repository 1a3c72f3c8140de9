"""Regenerate the NRQM parity fixtures: tests/data/nrqm_synthetic_model.mat and nrqm_reference.json.

What it does:
  (a) builds a deterministic synthetic NRQM model in the layout of the authors' NRQM_model.mat:
      a struct `model` with `linear` (4x1) and `rf`, a 1x3 cell of regression forests as
      randomforest-matlab's regRF_train stores them (fields lDau, rDau, nodestatus, nrnodes, upper,
      avnode, mbest, ndtree, ntree; (nodes, trees) arrays). Each forest has 20 random trees of
      depth <= 6 whose thresholds are midpoints between the feature values (computed by pyiqa) of
      the reference images and a few other images, so the splits separate real images; midpoints
      closer than 1e-4 (relative) to any value are skipped, so float rounding cannot flip a split;
  (b) takes the reference images of tests/evaluation/test_nrqm.py (`reference_images`, numpy
      only), which the tests regenerate identically (their SHA-256 is stored to catch drift);
  (c) stores, per image, pyiqa's Y channel digest, its f1, f2, f3 features, the three forest
      predictions on those features and pyiqa's NRQM score with the synthetic model.

It needs pyiqa's source (0.1.16, not installable here: pyiqa requires torchvision) imported
through a stub harness module exposing `nrqm_arch`:
    PYIQA_HARNESS=/tmp/pyiqa PYTHONPATH=src python tests/data/make_nrqm_reference.py
The tests never run it and never import pyiqa; they only read the two files it writes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import scipy.io

DATA = Path(__file__).parent
MODEL_FILE = DATA / "nrqm_synthetic_model.mat"
REFERENCE_FILE = DATA / "nrqm_reference.json"
NUM_TREES = 20
MAX_DEPTH = 6
SPLIT_PROBABILITY = 0.75  # of a node above MAX_DEPTH (the root always splits)
MARGIN = 1e-4  # minimal relative distance of a threshold to any image's feature value

# extra images (not stored) that only widen the range of feature values the thresholds come from
POOL_IMAGES = {"pool-a": (100, 100, 11), "pool-b": (120, 90, 12), "pool-c": (88, 140, 13), "pool-d": (110, 110, 14)}


def pyiqa_features(harness, image: np.ndarray):
    """pyiqa's Y channel (H, W) and its f1, f2, f3 for an (H, W, 3) uint8 image, following
    pyiqa's `nrqm` step by step (the function itself only returns the score)."""
    import torch
    from pyiqa.utils.color_util import to_y_channel

    arch = harness.nrqm_arch
    x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    y = to_y_channel(x, 255, "yiq").double()
    pyramid = arch.get_gauss_pyramid(y / 255.0)
    f1 = torch.cat([arch.block_dct(level) for level in pyramid], dim=1)
    f2 = arch.global_gsm(y)
    f3 = torch.cat(
        [torch.linalg.svd(arch.im2col(level, 5, "distinct"), full_matrices=False)[1] for level in pyramid], dim=1
    )
    return y[0, 0].numpy(), [f.numpy()[0] for f in (f1, f2, f3)]


def thresholds(values: np.ndarray) -> np.ndarray:
    """Midpoints between sorted distinct values that keep MARGIN away from all of them."""
    values = np.unique(values)
    middle = (values[:-1] + values[1:]) / 2
    half_gap = (values[1:] - values[:-1]) / 2
    return middle[half_gap > MARGIN * np.abs(middle) + 1e-6]


def random_tree(rng: np.random.Generator, candidates: dict[int, np.ndarray]) -> list[dict]:
    """Nodes in creation order (breadth first, as regRF_train numbers them)."""
    features = sorted(candidates)
    nodes = [{"depth": 0}]
    index = 0
    while index < len(nodes):
        node = nodes[index]
        if node["depth"] < MAX_DEPTH and (node["depth"] == 0 or rng.random() < SPLIT_PROBABILITY):
            feature = int(rng.choice(features))
            node.update(feature=feature, threshold=float(rng.choice(candidates[feature])))
            node["left"], node["right"] = len(nodes) + 1, len(nodes) + 2  # 1-based
            nodes += [{"depth": node["depth"] + 1}, {"depth": node["depth"] + 1}]
        node["value"] = float(np.round(rng.uniform(0, 10), 6))
        index += 1
    return nodes


def random_forest(rng: np.random.Generator, pool: np.ndarray) -> dict:
    """A regRF_train-style struct (as a dict for savemat) for features pool (images, D)."""
    candidates = {j + 1: thresholds(pool[:, j]) for j in range(pool.shape[1])}
    candidates = {j: c for j, c in candidates.items() if len(c)}
    trees = [random_tree(rng, candidates) for _ in range(NUM_TREES)]
    nrnodes = max(len(t) for t in trees) + 3  # regRF_train preallocates; unused rows stay 0
    shape = (nrnodes, NUM_TREES)
    arrays = {name: np.zeros(shape, np.int32) for name in ("lDau", "rDau", "nodestatus", "mbest")}
    upper, avnode = np.zeros(shape), np.zeros(shape)
    for t, tree in enumerate(trees):
        for k, node in enumerate(tree):
            avnode[k, t] = node["value"]
            if "feature" in node:
                arrays["lDau"][k, t], arrays["rDau"][k, t] = node["left"], node["right"]
                arrays["nodestatus"][k, t] = -3  # interior
                arrays["mbest"][k, t] = node["feature"]
                upper[k, t] = node["threshold"]
            else:
                arrays["nodestatus"][k, t] = -1  # terminal
    return {
        "lDau": arrays["lDau"],
        "rDau": arrays["rDau"],
        "nodestatus": arrays["nodestatus"],
        "nrnodes": np.array([[nrnodes]], np.int32),
        "upper": upper,
        "avnode": avnode,
        "mbest": arrays["mbest"],
        "ndtree": np.array([[len(t) for t in trees]], np.int32),
        "ntree": np.array([[NUM_TREES]], np.int32),
    }


def main() -> None:
    sys.path.insert(0, os.environ.get("PYIQA_HARNESS", "/tmp/pyiqa"))
    sys.path.insert(0, str(DATA.parent / "evaluation"))
    import harness  # stubs torchvision, loads pyiqa's nrqm_arch
    import torch
    from test_nrqm import image_digest, reference_images, sample_image

    images = reference_images()
    features = {name: pyiqa_features(harness, image) for name, image in images.items()}
    pool_features = [pyiqa_features(harness, sample_image(*spec))[1] for spec in POOL_IMAGES.values()]
    pool = [np.stack([f[g] for _, f in features.values()] + [f[g] for f in pool_features]) for g in range(3)]

    rng = np.random.default_rng(2017)
    rf = np.empty((1, 3), dtype=object)
    for g in range(3):
        rf[0, g] = random_forest(rng, pool[g])
    linear = np.array([[0.75], [0.4], [0.25], [0.3]])
    scipy.io.savemat(MODEL_FILE, {"model": {"linear": linear, "rf": rf}}, do_compression=True, oned_as="column")

    metric = harness.nrqm_arch.NRQM(pretrained_model_path=str(MODEL_FILE))
    reference = {}
    for name, image in images.items():
        y, (f1, f2, f3) = features[name]
        x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255)[None]
        score = float(metric(x))
        predictions = [
            float(harness.nrqm_arch.random_forest_regression(torch.from_numpy(f[None]), *params)[0, 0])
            for f, params in zip((f1, f2, f3), metric.rf_params_list)
        ]
        reference[name] = {
            "shape": list(image.shape),
            "image_sha256": image_digest(image),
            "luma_sha256": image_digest(y.astype(np.uint8)),
            "f1": f1.tolist(),
            "f2": f2.tolist(),
            "f3": f3.tolist(),
            "forest_predictions": predictions,
            "score": score,
        }
        print(name, image.shape, "score", score, "forests", predictions)
    document = {
        "pyiqa": "0.1.16",
        "model": MODEL_FILE.name,
        "note": "pyiqa's NRQM features and scores; regenerate with tests/data/make_nrqm_reference.py",
        "images": reference,
    }
    REFERENCE_FILE.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{MODEL_FILE.name}: {MODEL_FILE.stat().st_size} bytes")


if __name__ == "__main__":
    main()
