"""Evaluation, one concern per module:

    metrics.py    recall@k from a score matrix, within-group accuracy and its chance level
    gallery.py    encode a gallery once (images, captions), score it in a mode (global / fine / fused), re-rank
    retrieval.py  evaluate_retrieval: the entry point (gallery → scores → metrics → RetrievalResult)
    tables.py     the one builder of metric tables (result.table, a record's summary, the CLI's text)
    results.py    the one JSON form of an evaluation (``finelip eval --out`` and notebook 03 write it)
    probes.py     effective_length_curve: recall as captions are cut to a length; caption_probes (sentence moved,
                  dropped, filler, shuffle, first k sentences) and himo, the prefix-monotonicity score
    zeroshot.py   evaluate_zeroshot: CLIP's zero-shot classification protocol
    published.py  the literature's numbers (PUBLISHED) and the paper-style table beside a run's
    diagnose.py   slot statistics, group margins, loss diagnostics (why a model scores what it does)
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **{name: ".metrics" for name in ("group_accuracy", "group_chance", "image_to_text_ranks", "ranks_of_truth",
                                      "recall_at_k", "retrieval_metrics")},
    **{name: ".gallery" for name in ("MODES", "Gallery", "check_finite", "encode_gallery", "encode_texts", "eval_mode",
                                      "group_members", "model_modes", "rerank_scores", "score_gallery", "text_captions",
                                      "within_group_scores")},
    **{name: ".retrieval" for name in ("RetrievalResult", "clip_benchmark_metrics", "data_protocol", "evaluate_retrieval",
                                        "gallery_metrics")},
    **{name: ".tables" for name in ("metrics_table", "metrics_text")},
    **{name: ".results" for name in ("RESULTS_VERSION", "evaluation_results", "write_results")},
    **{name: ".probes" for name in ("caption_probes", "effective_length_curve", "himo", "plot_effective_length",
                                    "probes_table")},
    "evaluate_zeroshot": ".zeroshot",
    **{name: ".published" for name in ("PUBLISHED", "paper_table", "published_table")},
    **{name: ".diagnose" for name in ("effective_slots", "group_margins", "loss_diagnostics", "slot_similarity",
                                       "slot_statistics", "token_similarity", "weight_entropy")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
