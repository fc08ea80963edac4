"""Zero-shot classification with a FineLIP model (CLIP's protocol: one text classifier per class, the mean
of its templates' normalised embeddings)."""

from __future__ import annotations

from typing import Sequence

import torch

from ..model.finelip import FineLIP
from .gallery import eval_mode


@torch.no_grad()
def evaluate_zeroshot(
    model: FineLIP,
    images,
    labels: Sequence[int],
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Zero-shot classification accuracy (top-1 / top-5, percent): each class is the mean of its
    normalised template embeddings; images are PIL images or preprocessed tensors."""
    import torch.nn.functional as F

    from ..data.transforms import clip_transform
    from ..model.tokenizer import get_tokenizer

    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    bad = [label for label in labels if not 0 <= int(label) < len(classnames)]
    if bad:
        raise ValueError(f"labels must index classnames (0..{len(classnames) - 1}); got {bad[:5]}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokenizer = get_tokenizer(context_length=model.context_length)
    transform = clip_transform(model.config.vision)
    with eval_mode(model):
        classes = []
        for name in classnames:
            batch = tokenizer([template.format(name, c=name) for template in templates])  # "{}" or CLIP_benchmark's "{c}"
            embeds = F.normalize(model.encode_text(batch.input_ids.to(device), batch.attention_mask.to(device), fine=False).global_, dim=-1)
            classes.append(F.normalize(embeds.mean(0), dim=-1))
        classifier = torch.stack(classes)  # (classes, d)
        logits = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pixels = torch.stack([image if isinstance(image, torch.Tensor) else transform(image) for image in chunk]).to(device)
            logits.append(F.normalize(model.encode_image(pixels, fine=False).global_, dim=-1) @ classifier.T)
    logits = torch.cat(logits).cpu()
    targets = torch.as_tensor([int(label) for label in labels])
    top = logits.topk(min(5, len(classnames)), dim=1).indices
    return {"top1": 100.0 * (top[:, 0] == targets).float().mean().item(),
            "top5": 100.0 * (top == targets[:, None]).any(1).float().mean().item()}
