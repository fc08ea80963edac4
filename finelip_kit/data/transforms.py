"""Image preprocessing: CLIP's (resize the shortest side with bicubic, centre crop, normalise),
sized from the model's vision config; optional light augmentation for training."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from ..model.config import VisionConfig


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: grayscale, RGBA/LA/P (alpha composited on white), CMYK, 16-bit."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit data (Pillow opens 16-bit PNG / TIFF as I;16): full scale is 65535 whatever the
        # content, so a dark image stays dark (guessing the scale from the peak made it white).
        array = np.asarray(image, dtype=np.float64)
        return Image.fromarray((array / 65535.0 * 255).round().clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = max(array.max() - array.min(), 1e-12)
        return Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def clip_transform(config: VisionConfig, train: bool = False):
    """PIL image → normalised ``(3, s, s)`` float tensor, ``s = config.image_size``.

    ``train=True`` adds a mild random resized crop (scale 0.9-1) — no flips: captions
    say left and right.
    """
    return ClipTransform(config.image_size, config.mean, config.std, train)


class ClipTransform:
    """CLIP preprocessing; an image already at the target size skips the resampling (same result, faster)."""

    def __init__(self, size: int, mean, std, train: bool = False):
        self.size, self.train = size, train
        interpolation = v2.InterpolationMode.BICUBIC
        if train:
            self.resize = v2.RandomResizedCrop(size, scale=(0.9, 1.0), ratio=(0.95, 1.05), interpolation=interpolation, antialias=True)
        else:
            self.resize = v2.Compose([v2.Resize(size, interpolation=interpolation, antialias=True), v2.CenterCrop(size)])
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = v2.functional.pil_to_tensor(to_rgb(image))  # (3, h, w) uint8
        if self.train or tuple(pixels.shape[1:]) != (self.size, self.size):
            pixels = self.resize(pixels)
        return pixels.float().div_(255).sub_(self.mean).div_(self.std)
