"""The bundled default weights: present, small, loaded by default by the API and the CLI."""

import numpy as np
from PIL import Image

import demoe
from demoe.checkpoints import BUNDLED_DIR, DEFAULT_WEIGHTS, WEIGHTS_FILE, bundled_weights
from demoe.cli import main
from demoe.config import TASK_NAMES


def test_default_weights_are_bundled_and_within_40_mb():
    assert DEFAULT_WEIGHTS in bundled_weights()
    assert (BUNDLED_DIR / DEFAULT_WEIGHTS / WEIGHTS_FILE).stat().st_size <= 40 * 1024 * 1024


def test_load_model_without_arguments_gives_a_trained_demoe_in_eval_mode():
    model = demoe.load_model()
    assert not model.training and model.config.is_moe and model.config.task_names == TASK_NAMES
    # trained, not freshly initialised: fresh NAFBlocks have zero layer scales
    betas = [p for name, p in model.named_parameters() if name.endswith(".beta")]
    assert all(float(beta.abs().sum()) > 0 for beta in betas)


def test_deblur_command_works_with_no_weights_argument(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((37, 53, 3)) * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    assert main(["deblur", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--device", "cpu", "--quiet"]) == 0
    outputs = list((tmp_path / "out").iterdir())
    assert len(outputs) == 1 and Image.open(outputs[0]).size == (53, 37)


def test_api_deblur_uses_the_bundled_weights():
    image = (np.random.default_rng(1).random((32, 40, 3)) * 255).astype(np.uint8)
    restored = demoe.deblur(image, device="cpu")
    assert restored.shape == image.shape and restored.dtype == np.uint8
