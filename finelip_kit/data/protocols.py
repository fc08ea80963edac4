"""Evaluation protocols by name: which images and captions of a dataset a published number was
measured on. A number is only comparable with another measured under the same protocol, so
every result the kit prints carries its protocol (``Pairs.protocol``).

    load_pairs("flickr30k-all", root="/data/flickr30k")       # the official FineLIP / Long-CLIP protocol
    load_pairs("flickr30k", split="test", root=...)           # the Karpathy 1k test: protocol "flickr30k-1k"

A protocol is a dataset and one of its splits; ``load_pairs`` takes either a protocol name or
a dataset with a split. A dataset named without a split gets its default protocol: the one
the published tables (``evaluate.PUBLISHED``) were measured under.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    name: str
    dataset: str
    split: str
    pairs: str  # what it holds, for tables and the README
    used_by: str  # whose numbers were measured this way


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("urban1k", "urban1k", "all", "1,000 images, the first line of each caption file",
             "Long-CLIP's and FineLIP's code (its loader reads the first line)"),
    Protocol("docci", "docci", "test", "the 5,000 test images, one description each", "Long-CLIP, FineLIP, HiMo-CLIP tables"),
    Protocol("dci", "dci", "all", "7,805 images, caption = short_caption + newline + extra_caption",
             "the kit's long-DCI (every image of splits.json)"),
    Protocol("dci-long", "dci", "long", "7,602 images, caption = extra_caption only, images without one left out",
             "TULIP and later long-caption papers (their dci_long.csv)"),
    Protocol("sharegpt4v-1k", "sharegpt4v", "eval", "the first 1,000 records of the ShareGPT4V JSON",
             "Long-CLIP and FineLIP (ShareGPT4V-1k)"),
    Protocol("flickr30k-all", "flickr30k", "all", "all 31,783 images and 158,915 captions of results_20130124.token",
             "the official FineLIP and Long-CLIP evaluation code"),
    Protocol("flickr30k-1k", "flickr30k", "test", "the Karpathy 1k test split (1,000 images x 5 captions)",
             "the short-caption retrieval literature (CLIP, ALIGN, ...)"),
    Protocol("coco-val2017-first5", "coco", "val2017-first5", "val2017: 5,000 images, the first 5 captions of each",
             "the official FineLIP and Long-CLIP evaluation code (Long-CLIP's COCO 5k numbers)"),
    Protocol("coco-5k", "coco", "test", "the Karpathy 5k test split (val2014 images, 5 captions each)",
             "the short-caption retrieval literature"),
    Protocol("coco-val2017", "coco", "val2017", "val2017: 5,000 images, every caption (25,014)", "the kit (no paper)"),
)}

# A dataset named without a split: the protocol of the published numbers for it.
DEFAULT_PROTOCOL = {"urban1k": "urban1k", "docci": "docci", "dci": "dci", "sharegpt4v": "sharegpt4v-1k",
                    "flickr30k": "flickr30k-all", "coco": "coco-val2017-first5"}


def names_a_split(name: str) -> bool:
    """Whether ``name`` is a protocol that is not also a dataset (it fixes the split itself)."""
    key = str(name).lower().replace("_", "-")
    return key in PROTOCOLS and key not in DEFAULT_PROTOCOL


def protocol_name(dataset: str, split: str) -> str:
    """The protocol a dataset split is, or ``dataset:split`` when it is none of the named ones."""
    for protocol in PROTOCOLS.values():
        if protocol.dataset == dataset and protocol.split == split:
            return protocol.name
    return f"{dataset}:{split}"


def protocols_table():
    """Every named protocol: dataset, split, what it holds and whose numbers used it."""
    import pandas

    return pandas.DataFrame([vars(p) for p in PROTOCOLS.values()]).set_index("name")
