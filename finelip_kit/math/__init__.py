"""The math, pure functions and small modules on tensors; nothing here imports the rest of the kit.

    positional.py  text position tables stretched to a longer context (KPS: keep the first rows, stretch the rest)
    atrm.py        ATRM, the adaptive token refinement module (slots pooled from tokens by learned queries)
    clim.py        CLIM, cross-modal late interaction: token-level image-caption scores, chunked to a memory budget
    clim_fused.py  the same scores in one fused GPU kernel (triton), where one is available
    losses.py      InfoNCE, the triplet loss, primary-component matching, the batch gathers of DDP
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "ATRM": ".atrm", "masked_softmax": ".atrm",
    "clim_candidate_scores": ".clim", "clim_pair_scores": ".clim", "clim_scores": ".clim", "token_alignment": ".clim",
    "clim_scores_fused": ".clim_fused",
    "gather_no_grad": ".losses", "gather_with_grad": ".losses", "info_nce": ".losses", "positives_from_ids": ".losses",
    "primary_component_loss": ".losses", "primary_components": ".losses", "slot_overlap": ".losses", "triplet_loss": ".losses",
    "interpolation_matrix": ".positional", "kps_interpolation_matrix": ".positional", "kps_ratio": ".positional",
    "linear_interpolation_matrix": ".positional", "stretch_position_embedding": ".positional",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
