"""Data: one registry of sources (``datasets.SOURCES``: the embedded synthetic benchmark and the real
long-caption datasets), one loader (``load_pairs``) for them and for files, shards and hub ids,
captions as sentences (``captions``: the splitter, DeBias-CLIP's augmentations, the probes'
transforms), transforms and collate. Names are imported on first use: the settings and the command
line's ``--help`` read ``data.captions`` without paying for torch."""

from .._lazy import lazy_exports

_EXPORTS = {
    **{name: ".collate" for name in ("CaptionView", "Collate", "PairDataset")},
    **{name: ".datasets" for name in ("KNOWN", "SOURCES", "DataSource", "first_sentence", "load_pairs", "source_info")},
    **{name: ".pairs" for name in ("LoadReport", "Pairs", "open_image")},
    **{name: ".synthetic" for name in ("SyntheticConfig", "SyntheticScenes", "show_samples", "to_hf_dataset", "write_jsonl")},
    **{name: ".transforms" for name in ("clip_transform", "to_rgb")},
    **{name: ".captions" for name in ("CaptionAugment", "augment_caption", "probe_caption", "split_sentences")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
