"""Captions as sentences: the splitter, DeBias-CLIP's sentence-level training augmentations and
the robustness probes' caption transforms. Pure functions of text (and, where random, of a seed).

    sentences = split_sentences("A grey canvas with nine shapes. A 2.5 cm red square, e.g. on the left")
    augment_caption(caption, CaptionAugment(drop_summary=0.5, keep_sentences=2), seed=sample_seed(s, epoch, i))
    probe_caption(caption, "move_first", 2)          # the first sentence moved to position 2

DeBias-CLIP ("CLIP Is Shortsighted", CVPR 2026) trains on long captions whose first sentence is a
summary the model can use as a shortcut. Its augmentations, as this kit defines them (the paper's
code was not readable here; what was chosen is said on each function):

- ``drop_summary`` (a probability): the first sentence removed (a caption of one sentence is kept);
- ``keep_sentences``: a random subset of the remaining sentences, their order kept — an integer
  (at most that many) or a fraction in (0, 1] of them (at least one);
- ``shuffle``: the kept sentences in a random order (the project page says the rest is "randomly
  permuted and sub-sampled"; off by default, so sub-sampling alone keeps the caption's order);
- ``pad_sentences``: 0 … n filler sentences (``filler``) put before the caption, the number drawn
  per caption, so that the content reaches text positions a plain caption never fills. (The paper
  pads "the token sequence"; the kit pads with whole filler sentences, its own evaluation's filler,
  so that a padded caption is still a caption every tokenizer reads the same way.)

DeBias-CLIP trains on two text inputs, the full caption and an augmented one, each with the loss
(``train.caption_inputs = "full+augmented"``, in the trainer and ``FineLIP.loss_terms``); with
``"augmented"`` the augmented caption replaces the full one.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

FILLER = "This is a photo."
# how the augmented caption enters training: in place of the caption, or beside it (DeBias-CLIP's two inputs)
CAPTION_INPUTS = ("augmented", "full+augmented")
# Words ending in a period that do not end a sentence (lower case, without the final period).
ABBREVIATIONS = frozenset({"e.g", "i.e", "vs", "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "approx", "fig", "cf",
                           "u.s", "u.k", "a.m", "p.m", "ca", "mt"})
ENDS_OR_NOT = frozenset({"etc"})  # ends a sentence when the next word starts with a capital letter
_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")


def split_sentences(text: str) -> list[str]:
    """``text``'s sentences, each stripped, with its own end punctuation. A sentence ends at ``.``,
    ``!`` or ``?`` (a run of them, then closing quotes or brackets) before white space or the end
    of the text — so never inside a number (``2.5``) — except after an abbreviation (``e.g.``,
    ``Mr.``, ``St.``: ``ABBREVIATIONS``), a single capital letter (``J. Smith``) or ``No.`` before a
    number; ``etc.`` ends one when the next word starts with a capital letter. A last sentence
    without a final period is kept as it is; white space runs become one space; empty text gives
    no sentences."""
    text = " ".join(str(text).split())
    sentences, start = [], 0
    for match in _END.finditer(text):
        if match.group().startswith(".") and not _ends(text[start:match.start()], text[match.end():].lstrip()):
            continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    rest = text[start:].strip()
    return [s for s in sentences if s] + ([rest] if rest else [])


def _ends(before: str, after: str) -> bool:
    """Whether a period after ``before`` (the sentence so far), followed by ``after``, ends it."""
    if not after:
        return True
    word = before.rsplit(" ", 1)[-1].lstrip("(\"'")
    lower = word.lower()
    if lower in ABBREVIATIONS or (len(word) == 1 and word.isupper()):
        return False
    if lower == "no" and after[:1].isdigit():
        return False
    if lower in ENDS_OR_NOT:
        return after[:1].isupper()
    return True


def join_sentences(sentences: list[str]) -> str:
    return " ".join(sentences)


# ----------------------------------------------------------------------------- training augmentations
@dataclass(frozen=True)
class CaptionAugment:
    """DeBias-CLIP's caption augmentations (all off by default). ``drop_summary``: the probability
    of removing the first sentence; ``keep_sentences``: None (all), an integer ≥ 1 (at most that
    many, chosen at random, order kept) or a fraction in (0, 1]; ``shuffle``: the kept sentences in
    a random order; ``pad_sentences``: the most filler sentences put in front (0 … n, uniform);
    ``filler``: their text."""

    drop_summary: float = 0.0
    keep_sentences: int | float | None = None
    pad_sentences: int = 0
    filler: str = FILLER
    shuffle: bool = False

    def __post_init__(self):
        if not 0.0 <= self.drop_summary <= 1.0:
            raise ValueError(f"drop_summary is a probability in [0, 1], got {self.drop_summary!r}")
        keep = self.keep_sentences
        if keep is not None and not ((isinstance(keep, int) and keep >= 1) or (isinstance(keep, float) and 0 < keep <= 1)):
            raise ValueError(f"keep_sentences is None, an integer ≥ 1 or a fraction in (0, 1], got {keep!r}")
        if not isinstance(self.pad_sentences, int) or self.pad_sentences < 0:
            raise ValueError(f"pad_sentences is an integer ≥ 0, got {self.pad_sentences!r}")
        if not split_sentences(self.filler):
            raise ValueError("filler is empty: give the sentence to pad with, e.g. 'This is a photo.'")

    @property
    def active(self) -> bool:
        return bool(self.drop_summary or self.keep_sentences is not None or self.pad_sentences or self.shuffle)


def augment_sentences(sentences: list[str], augment: CaptionAugment, rng: random.Random) -> list[str]:
    """The augmentations in order — summary removal, sub-sampling, shuffling, padding — drawing from
    ``rng`` in a fixed order (one draw each, whether it acts or not; the shuffle draws only when on,
    so turning it on leaves the other augmentations' draws as they were), so a caption's result
    depends only on the seed."""
    out = list(sentences)
    drop = rng.random() < augment.drop_summary
    if drop and len(out) > 1:
        out = out[1:]
    keep = augment.keep_sentences
    count = len(out) if keep is None else (min(keep, len(out)) if isinstance(keep, int) else max(1, round(keep * len(out))))
    chosen = sorted(rng.sample(range(len(out)), count)) if out else []
    out = [out[i] for i in chosen]
    if augment.shuffle:
        rng.shuffle(out)
    pad = rng.randint(0, augment.pad_sentences)
    return [augment.filler] * pad + out


def augment_caption(caption: str, augment: CaptionAugment, seed: int) -> str:
    """``caption`` augmented with a generator seeded by ``seed`` (``data.epochs.sample_seed(run seed,
    epoch, index)`` in training: another draw each epoch, the same on resume)."""
    if not augment.active:
        return caption
    return join_sentences(augment_sentences(split_sentences(caption), augment, random.Random(seed)))


# ----------------------------------------------------------------------------- robustness probes
PROBES = ("move_first", "drop_first", "prepend_filler", "shuffle", "first_k")


def probe_sentences(sentences: list[str], probe: str, k: int = 1, seed: int = 0, filler: str = FILLER) -> list[str]:
    """One probe's caption, as sentences: ``move_first`` — the first sentence moved to position
    ``k`` (0-based; past the end: last); ``drop_first`` — the first sentence removed (a one-sentence
    caption is kept); ``prepend_filler`` — ``k`` filler sentences first; ``shuffle`` — the sentences
    in a random order (``random.Random(seed)``); ``first_k`` — the first ``k`` sentences."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    if k < 0:
        raise ValueError(f"k is ≥ 0, got {k}")
    out = list(sentences)
    if probe == "move_first":
        first, rest = out[:1], out[1:]
        return rest[:k] + first + rest[k:]
    if probe == "drop_first":
        return out[1:] if len(out) > 1 else out
    if probe == "prepend_filler":
        return [filler] * k + out
    if probe == "shuffle":
        random.Random(seed).shuffle(out)
        return out
    if k < 1:
        raise ValueError("first_k keeps at least one sentence: k ≥ 1")
    return out[:k]


def probe_caption(caption: str, probe: str, k: int = 1, seed: int = 0, filler: str = FILLER) -> str:
    return join_sentences(probe_sentences(split_sentences(caption), probe, k, seed, filler))
