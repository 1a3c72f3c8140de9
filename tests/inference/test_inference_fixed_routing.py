"""`Deblurrer.restore(expert_weights=...)`: a mixture decided by the caller (e.g. once per video shot)."""

from __future__ import annotations

import numpy as np
import pytest

from demoe.inference import Deblurrer

from inference_testing import photo, quantized, tiny_model


@pytest.fixture(scope="module")
def deblurrer():
    return Deblurrer(tiny_model(), device="cpu")


def test_one_hot_weights_equal_the_named_task(deblurrer):
    image = quantized(photo(40, 56), np.uint8)
    named = deblurrer.restore(image, task="low_light")
    fixed = deblurrer.restore(image, expert_weights={"low_light": 3.0})  # normalised to 1
    np.testing.assert_array_equal(fixed.image, named.image)
    assert fixed.experts_used == ["low_light"] and fixed.expert_weights == {"low_light": 1.0}
    assert fixed.task_probs == pytest.approx(named.task_probs)  # the router still reports


def test_a_mixture_is_used_as_given_on_every_tile(deblurrer):
    image = quantized(photo(40, 56, seed=1), np.uint8)
    mixture = {"defocus": 1.0, "global_motion": 3.0}
    whole = deblurrer.restore(image, expert_weights=mixture)
    tiled = deblurrer.restore(image, expert_weights=mixture, tile=32, tile_overlap=8)
    assert whole.expert_weights == tiled.expert_weights == {"global_motion": 0.75, "defocus": 0.25}
    assert tiled.tiles > 1 and tiled.task_probs is None  # no router pass when the caller decided
    other = deblurrer.restore(image, expert_weights={"defocus": 1.0})
    assert not np.array_equal(whole.image, other.image)


@pytest.mark.parametrize(
    "weights, message",
    [({"blur": 1.0}, "unknown task 'blur'"), ({"defocus": -1.0}, ">= 0"), ({"defocus": 0.0}, "all zero")],
)
def test_bad_weights_are_refused(deblurrer, weights, message):
    with pytest.raises(ValueError, match=message):
        deblurrer.restore(np.zeros((8, 8, 3), np.uint8), expert_weights=weights)
