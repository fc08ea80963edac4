"""What a training step reads: deterministic, resumable, rank-split batches of seeded pairs."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import Sampler

from ..data.captions import CaptionAugment, augment_caption
from ..data.collate import PairDataset
from ..data.epochs import EpochPlan, sample_seed


class EpochSampler(EpochPlan, Sampler[int]):
    """Deterministic shuffling per ``(seed, epoch)`` (``data/epochs.py``); each global batch of
    ``batch_size · world`` indices is split into one contiguous chunk per rank, so N ranks see
    exactly the global batch a single process would. ``start_batch`` resumes mid-epoch without
    reading skipped data.

    ``groups`` (one id per index): shuffle whole groups instead of single indices, so a batch
    holds complete hard-negative groups (a group straddles two batches only where the batch
    size is not a multiple of the group size)."""

    def __init__(self, size: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 groups: Sequence[int] | None = None):
        self.members = None
        if groups is not None:
            if len(groups) != size:
                raise ValueError(f"groups has {len(groups)} ids for {size} training pairs; give one per pair")
            members: dict[int, list[int]] = {}
            for index, group in enumerate(groups):
                members.setdefault(group, []).append(index)
            self.members = list(members.values())
        super().__init__(size, batch_size, seed, rank, world_size)

    def __iter__(self):
        generator = self.generator()
        if self.members is None:
            order = torch.randperm(self.size, generator=generator)
        else:
            shuffled = torch.randperm(len(self.members), generator=generator).tolist()
            order = torch.tensor([i for g in shuffled for i in self.members[g]])
        global_batch = self.batch_size * self.world_size
        for b in range(self.start_batch, self.batches_per_epoch):
            chunk = order[b * global_batch + self.rank * self.batch_size : b * global_batch + (self.rank + 1) * self.batch_size]
            yield from chunk.tolist()

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


class SeededPairs(PairDataset):
    """``PairDataset`` whose random augmentations — the image's (``transform``) and the caption's
    (``captions``: ``data.captions.CaptionAugment``) — are functions of ``(seed, epoch, index)``:
    another draw each epoch, exactly the same on resume. The augmented caption replaces ``caption``,
    or with ``beside=True`` comes as ``augmented_caption`` beside it."""

    def __init__(self, records, transform, seed: int, captions: CaptionAugment | None = None, beside: bool = False):
        super().__init__(records, transform)
        self.seed, self.epoch = seed, 0
        self.captions = captions if captions is not None and captions.active else None
        self.beside = beside  # the augmented caption as "augmented_caption", beside the full one (two text inputs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seed = sample_seed(self.seed, self.epoch, index)
        if not getattr(self.transform, "train", False):
            item = super().__getitem__(index)  # deterministic already
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                item = super().__getitem__(index)
        if self.captions is not None:  # Python's own generator, seeded alike: independent of the image's draws
            augmented = augment_caption(item["caption"], self.captions, seed)
            item = {**item, ("augmented_caption" if self.beside else "caption"): augmented}
        return item


def _groups(data) -> list[int]:
    """The hard-negative group id of every training pair, for ``group_batches``."""
    if not callable(getattr(data, "groups", None)):
        raise ValueError(
            f"group_batches=True needs training data that declares its hard-negative groups (a .groups() method, "
            f"as SyntheticScenes has); {type(data).__name__} has none: set group_batches=False"
        )
    return list(data.groups())
