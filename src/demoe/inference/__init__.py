"""Deblurring real photographs: full-fidelity image files, tiling, and the `Deblurrer` API.

Nothing here imports the training stack.
"""

from demoe.imageio import ImageFile, ImageReadError, read_image, write_image
from demoe.inference.pipeline import DeblurResult, Deblurrer, deblur

__all__ = [
    "DeblurResult",
    "Deblurrer",
    "ImageFile",
    "ImageReadError",
    "deblur",
    "read_image",
    "write_image",
]
