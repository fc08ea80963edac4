"""The one JSON form of an evaluation, written by ``finelip eval --out`` and notebook 03 alike.

    write_results("results.json", result, model="tiny-synthetic-clip", data="synthetic", split=None)

Keys: ``version``, ``model`` / ``data`` / ``split`` (as the caller named them), ``protocol``,
``pairs``, ``metrics`` (``<mode>/<direction>/R@k`` and ``<mode>/group/<direction>``, percent),
``chance`` (within-group accuracy of a random scorer, where the data has groups),
``clip_benchmark`` (the same recalls under CLIP_benchmark's names) and, when asked for,
``probes`` (``caption_probes``' sentence-level probe metrics).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .retrieval import RetrievalResult, clip_benchmark_metrics

RESULTS_VERSION = 1


def evaluation_results(result: RetrievalResult, *, model: Any, data: Any, split: str | None,
                       pairs: int | None = None, probes: dict[str, float] | None = None) -> dict[str, Any]:
    """``result`` as the JSON-ready dictionary ``write_results`` writes (with ``probes``:
    ``caption_probes``' metrics under ``"probes"``); refuses a non-finite metric."""
    bad = sorted(key for key, value in {**result.metrics, **(probes or {})}.items() if not math.isfinite(value))
    if bad:
        raise ValueError(f"the evaluation has non-finite metrics {bad}: no results are written for it")
    out = {"version": RESULTS_VERSION, "model": str(model), "data": str(data), "split": split,
           "protocol": result.protocol, "pairs": pairs, "metrics": dict(result.metrics), "chance": result.chance,
           "clip_benchmark": clip_benchmark_metrics(result.metrics)}
    if probes:
        out["probes"] = dict(probes)
    return out


def write_results(path: str | Path, result: RetrievalResult, *, model: Any, data: Any, split: str | None,
                  pairs: int | None = None, probes: dict[str, float] | None = None) -> Path:
    """Write ``result`` to ``path`` (its folder made as needed) in the one form; returns the path."""
    path = Path(path)
    text = json.dumps(evaluation_results(result, model=model, data=data, split=split, pairs=pairs, probes=probes), indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
