"""Views of models and runs, above evaluation and below the experiments (nothing here imports
``finelip_kit.train`` or ``finelip_kit.experiments``):

    plots.py     training curves (LiveLoss, plot_history), a run's scores (plot_scores, plot_run)
    viz.py       token-alignment heatmaps: alignment_maps, the plots, pointing_game, AlignmentExplorer
    generate.py  text-to-image with the long text encoder (diffusers pipelines, side-by-side comparisons)
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **{name: ".plots" for name in ("LOSS_KEYS", "LiveLoss", "plot_history", "plot_run", "plot_scores")},
    **{name: ".viz" for name in ("VIEWS", "AlignmentExplorer", "AlignmentMaps", "alignment_maps", "plot_caption_shading",
                                  "plot_slot_maps", "plot_word_heatmap", "plot_word_slot_matrix", "pointing_game", "upsample")},
    **{name: ".generate" for name in ("EXAMPLE_PROMPTS", "Comparison", "compare_long_prompts", "load_long_text_encoder",
                                       "load_prompts", "long_prompt_pipeline", "long_prompt_pipeline_xl", "offline_demo",
                                       "pipeline_sources", "plot_comparison", "score_images", "split_at_context",
                                       "stretch_text_encoder", "text_embeddings")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
