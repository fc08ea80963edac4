"""The literature's long-caption retrieval numbers, each with its protocol and source, and the paper-layout
table that sets a run beside them (shared/PUBLISHED_RESULTS.md)."""

from __future__ import annotations

from .retrieval import RetrievalResult


PUBLISHED = [
    # model, backbone, protocol (data/protocols.py), I2T R@1, T2I R@1, source (see shared/PUBLISHED_RESULTS.md).
    # Urban1k, DOCCI and ShareGPT4V-1k numbers come from Long-CLIP's evaluation code and those that copy
    # it; Long-CLIP's COCO 5k numbers from its coco.py: val2017, the first 5 captions of each image.
    ("Long-CLIP", "B/16", "urban1k", 78.9, 79.5, "HiMo-CLIP paper, Table 1"),
    ("Long-CLIP", "B/16", "docci", 63.2, 71.5, "HiMo-CLIP paper, Table 1"),
    ("Long-CLIP", "L/14", "urban1k", 82.7, 86.1, "HiMo-CLIP paper, Table 1"),
    ("Long-CLIP", "L/14", "docci", 66.5, 78.6, "HiMo-CLIP paper, Table 1"),
    ("TULIP", "B/16", "urban1k", 88.1, 86.6, "quoted in FineLIP (secondary)"),
    ("LAPS", "B/16", "urban1k", 89.0, 88.4, "quoted in FineLIP (secondary)"),
    ("FineLIP", "B/16", "urban1k", 90.7, 89.3, "FineLIP Table 1 as quoted by two secondary sources"),
    ("FineLIP*", "B/16", "urban1k", 91.2, 90.0, "secondary"),
    ("FineLIP", "L/14", "urban1k", 93.2, 93.0, "quoted by HyFL-CLIP from the original paper"),
    ("FineLIP", "L/14", "docci", 82.2, 83.1, "quoted by HyFL-CLIP from the original paper"),
    ("CLIP", "B/16", "coco-val2017-first5", 51.8, 32.7, "Long-CLIP paper"),
    ("Long-CLIP", "B/16", "coco-val2017-first5", 57.6, 40.4, "Long-CLIP paper"),
    ("CLIP", "L/14", "coco-val2017-first5", 56.1, 35.4, "Long-CLIP paper"),
    ("Long-CLIP", "L/14", "coco-val2017-first5", 62.8, 46.3, "Long-CLIP paper"),
    ("CLIP", "B/16", "sharegpt4v-1k", 78.2, 79.6, "Long-CLIP paper"),
    ("Long-CLIP", "B/16", "sharegpt4v-1k", 94.6, 93.3, "Long-CLIP paper"),
    # DeBias-CLIP (CVPR 2026): Long-CLIP's training with the summary sentence removed, sentences sub-sampled and
    # the tokens padded, on ShareGPT4V (the kit's paper-b16-debias preset); evaluated with Long-CLIP's Urban1k
    # code (the urban1k protocol). The number as issue 32 quotes it: the paper's tables were not readable here.
    ("DeBias-CLIP", "B/16", "urban1k", 93.1, 93.0, "DeBias-CLIP (arXiv 2602.22419), as quoted in the kit's issue 32"),
]


def published_table(protocol: str | None = None):
    """The literature's R@1 numbers with the protocol each was measured under and their sources;
    ``protocol``: only those of one protocol, or of every protocol of one dataset (``"coco"``)."""
    import pandas

    from ..data.protocols import PROTOCOLS

    rows = [dict(model=m, backbone=b, protocol=p, **{"I2T R@1": i, "T2I R@1": t}, source=s) for m, b, p, i, t, s in PUBLISHED]
    table = pandas.DataFrame(rows)
    if protocol is None:
        return table
    wanted = protocol.lower()
    keep = [p == wanted or PROTOCOLS[p].dataset == wanted for p in table.protocol]
    return table[keep].reset_index(drop=True)


def paper_table(results: dict[str, RetrievalResult | dict[str, float]], mode: str = "global", name: str = "this run"):
    """Rows in the FineLIP / Long-CLIP layout: one row per model, columns protocol × I2T/T2I × R@1/R@5.

    ``results``: label → a ``RetrievalResult`` or a metrics dict. A label that is a protocol
    name (``urban1k``, ``coco-val2017-first5``, ...) names the column; otherwise the result's
    own ``protocol`` does. The published numbers (R@1) of the same datasets are stacked beside,
    each in the column of the protocol it was measured under: a published number sits in the
    same column as this run's only when the protocols are the same."""
    import pandas

    from ..data.protocols import PROTOCOLS

    row: dict[tuple[str, str, str], float] = {}
    datasets = set()
    for label, result in results.items():
        metrics = result.metrics if isinstance(result, RetrievalResult) else result
        own = result.protocol if isinstance(result, RetrievalResult) else None
        protocol = label.lower() if label.lower() in PROTOCOLS else own or label
        if own in PROTOCOLS and protocol != own:
            raise ValueError(f"paper_table: the result labelled {label!r} was measured under protocol {own!r}; "
                             f"label it {own!r} (or by any name that is not another protocol)")
        datasets.add(PROTOCOLS[protocol].dataset if protocol in PROTOCOLS else protocol.split(":")[0].split("[")[0])
        for direction, column in (("i2t", "I2T"), ("t2i", "T2I")):
            for k in ("R@1", "R@5"):
                key = f"{mode}/{direction}/{k}"
                if key in metrics:
                    row[(protocol, column, k)] = round(metrics[key], 1)
    ours = pandas.DataFrame([row], index=[name])
    published = [(f"{model} {backbone} ({source})", {(protocol, "I2T", "R@1"): i2t, (protocol, "T2I", "R@1"): t2i})
                 for model, backbone, protocol, i2t, t2i, source in PUBLISHED if PROTOCOLS[protocol].dataset in datasets]
    others = pandas.DataFrame([values for _, values in published], index=[label for label, _ in published])
    table = pandas.concat([ours, others]) if published else ours
    table.columns = pandas.MultiIndex.from_tuples(table.columns, names=["protocol", "direction", "metric"])
    return table.sort_index(axis=1)
