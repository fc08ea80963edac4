"""Run under torchrun by tests/test_distributed.py: each rank computes losses on its slice of
a fixed global batch and saves its gradients for the parent to compare."""

import sys

import torch
import torch.distributed as dist

from finelip_kit import create_model
from finelip_kit.clim import clim_scores
from finelip_kit.losses import gather_no_grad, gather_with_grad, info_nce, positives_from_ids, triplet_loss


def global_batch():
    g = torch.Generator().manual_seed(1)
    return dict(
        images=torch.randn(8, 6, generator=g),
        texts=torch.randn(8, 6, generator=g),
        image_tokens=torch.randn(8, 5, 6, generator=g),
        text_tokens=torch.randn(8, 4, 6, generator=g),
        ids=torch.tensor([0, 1, 2, 2, 3, 4, 5, 5]),
    )


def model_batch(tokenizer, augmented: bool = False):
    """The model's global batch; with ``augmented``, a second text input (DeBias-CLIP's augmented
    caption, ``train.caption_inputs = full+augmented``) beside the first."""
    g = torch.Generator().manual_seed(2)
    captions = [f"object {i} " * (3 + 5 * i) for i in range(8)]
    tokens = tokenizer(captions, padding="max_length")
    batch = dict(
        images=torch.randn(8, 3, 32, 32, generator=g),
        input_ids=tokens.input_ids,
        attention_mask=tokens.attention_mask,
        image_ids=torch.tensor([0, 1, 2, 2, 3, 4, 5, 6]),
    )
    if augmented:
        second = tokenizer([f"This is a photo. object {i} " * (1 + 2 * i) for i in range(8)], padding="max_length")
        batch.update(augmented_input_ids=second.input_ids, augmented_attention_mask=second.attention_mask)
    return batch


def tiny_model():
    torch.manual_seed(0)
    overrides = {"vision.image_size": 32, "text.context_length": 64, "loss": "global+fine", "atrm_k": 4}
    return create_model("tiny", **overrides)


def local_slice(x, rank, world):
    n = x.shape[0] // world
    return x[rank * n : (rank + 1) * n]


def main(out_path):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = {k: local_slice(v, rank, world) for k, v in global_batch().items()}
    result = {}
    for local_loss in (False, True):
        images = data["images"].clone().requires_grad_()
        texts = data["texts"].clone().requires_grad_()
        scale = torch.tensor(2.0, requires_grad=True)
        info_nce(images, texts, scale, data["ids"], local_loss=local_loss).backward()
        result[f"info_nce_{local_loss}"] = (images.grad, texts.grad, scale.grad)
    image_tokens = data["image_tokens"].clone().requires_grad_()
    text_tokens = data["text_tokens"].clone().requires_grad_()
    scores = clim_scores(gather_with_grad(image_tokens), gather_with_grad(text_tokens))
    positives = positives_from_ids(gather_no_grad(data["ids"]), scores.shape[0], scores.device)
    triplet_loss(scores, positives).backward()
    result["triplet"] = (image_tokens.grad, text_tokens.grad)

    from finelip_kit import get_tokenizer

    for name, augmented in (("model", False), ("model_two_inputs", True)):
        model = tiny_model()
        batch = {k: local_slice(v, rank, world) for k, v in model_batch(get_tokenizer(context_length=64), augmented).items()}
        terms = model(batch, augmented_weight=0.5 if augmented else 1.0)
        terms["loss"].backward()
        result[name] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        result[f"{name}_terms"] = {k: v.detach() for k, v in terms.items()}
    torch.save(result, f"{out_path}/rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
