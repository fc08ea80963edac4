"""Batching image-caption records for the model: images transformed, captions tokenized at the
model's context (EOT kept on truncation), truncations counted."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from ..model.tokenizer import CLIPTextTokenizer


class PairDataset(Dataset):
    """Records (dicts with ``image``, ``caption``, ...) with the image transformed.

    ``records`` is anything indexable: ``SyntheticScenes``, a ``Pairs`` from ``load_pairs``,
    a ``datasets.Dataset``, a list of dicts.
    """

    def __init__(self, records, transform: Callable):
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = dict(self.records[index])
        record["image"] = self.transform(record["image"])
        return record


class Collate:
    """``list of records → batch dict`` for ``FineLIP.forward`` and evaluation.

    Batch: ``images`` ``(b, 3, s, s)``, ``input_ids``/``attention_mask`` ``(b, n)``,
    ``image_ids`` ``(b,)``, ``groups`` ``(b,)`` (when records carry them),
    ``short_input_ids``/``short_attention_mask`` (with ``short_captions=True``),
    ``augmented_input_ids``/``augmented_attention_mask`` (when the records carry an
    ``augmented_caption``: a second text input), and ``stats``: ``{"truncated": captions cut at
    the context, augmented ones included, "captions": b}``.
    """

    def __init__(self, tokenizer: CLIPTextTokenizer, context_length: int | None = None, short_captions: bool = False):
        self.tokenizer = tokenizer
        self.context_length = context_length or tokenizer.context_length
        self.short_captions = short_captions

    def __call__(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        text = self.tokenizer([r["caption"] for r in records], context_length=self.context_length)
        batch: dict[str, Any] = {
            "images": torch.stack([r["image"] for r in records]),
            "input_ids": text.input_ids,
            "attention_mask": text.attention_mask,
            "image_ids": torch.tensor([_as_int_id(r["image_id"]) for r in records]),
            "stats": {"truncated": text.num_truncated, "captions": len(records)},
        }
        if all("group" in r and r["group"] is not None for r in records):
            batch["groups"] = torch.tensor([int(r["group"]) for r in records])
        if "augmented_caption" in records[0]:  # DeBias-CLIP's second text input (train.caption_inputs)
            augmented = self.tokenizer([r["augmented_caption"] for r in records], context_length=self.context_length)
            batch["augmented_input_ids"], batch["augmented_attention_mask"] = augmented.input_ids, augmented.attention_mask
            batch["stats"]["truncated"] += augmented.num_truncated
        if self.short_captions:
            short = self.tokenizer([r["short_caption"] or r["caption"] for r in records], context_length=self.context_length)
            batch["short_input_ids"], batch["short_attention_mask"] = short.input_ids, short.attention_mask
        return batch


def _as_int_id(value) -> int:
    if isinstance(value, (int, torch.Tensor)):
        return int(value)
    raise TypeError(f"image_id must be an integer index (load_pairs assigns them), got {value!r}")


class CaptionView:
    """Records whose ``caption`` is taken from another field (``alt_caption``, ``short_caption``)."""

    def __init__(self, records, field: str):
        self.records, self.field = records, field

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = dict(self.records[index])
        if self.field not in record:
            raise KeyError(f"record {index} has no caption field {self.field!r}; its fields: {sorted(record)}")
        record["caption"] = record[self.field]
        return record
