"""finelip-kit: long-caption, fine-grained image-text alignment (FineLIP, Long-CLIP).

The package in layers (docs/architecture.md), each importing only those before it:

    math/         pure tensor math: position stretching, ATRM, CLIM, losses
    model/        the configs (the architectures), towers, tokenizer, FineLIP; weights/ in and out beside it
    data/         one registry of data sources (the synthetic benchmark, real datasets, files, shards)
    evaluation/   metrics, gallery scoring, retrieval, probes, zero-shot, published numbers
    train/        the loop, checkpoints, sampling, execution, trackers, pre-emption
    views/        figures, token-alignment heatmaps, text-to-image
    experiments/  settings, presets, the one recipe, records, grids, SLURM, the explorer

The names below are imported when first used (PEP 562), so ``import finelip_kit`` and ``finelip --help``
do not pay for torch until something needs it. Modules from before this layout keep their names
(``finelip_kit.evaluate``, ``finelip_kit.recipe``, ``finelip_kit.ablation``, ...): ``_MOVED`` maps each
to its place now.
"""

import importlib.abc
import importlib.util
import sys
from importlib import import_module

from ._lazy import lazy_exports
from ._version import __version__

_EXPORTS = {
    "ATRM": ".math.atrm",
    "Features": ".model.towers",
    "FineLIP": ".model.finelip",
    "FineLIPConfig": ".model.config",
    "TextConfig": ".model.config",
    "TextTower": ".model.towers",
    "VisionConfig": ".model.config",
    "VisionTower": ".model.towers",
    "clim_pair_scores": ".math.clim",
    "clim_scores": ".math.clim",
    "create_model": ".model.finelip",
    "get_tokenizer": ".model.tokenizer",
    "global_similarity": ".model.finelip",
    "load_model": ".model.pretrained",
    "preset": ".model.config",
    "stretch_position_embedding": ".math.positional",
    "token_alignment": ".math.clim",
}
__all__ = [*sorted(_EXPORTS), "__version__"]

# Where each module of the flat layout lives now (old import paths keep working; the objects are the same).
_MOVED = {
    "finelip_kit.positional": "finelip_kit.math.positional", "finelip_kit.atrm": "finelip_kit.math.atrm",
    "finelip_kit.clim": "finelip_kit.math.clim", "finelip_kit.clim_fused": "finelip_kit.math.clim_fused",
    "finelip_kit.losses": "finelip_kit.math.losses", "finelip_kit.config": "finelip_kit.model.config",
    "finelip_kit.towers": "finelip_kit.model.towers", "finelip_kit.tokenizer": "finelip_kit.model.tokenizer",
    "finelip_kit.torchscript": "finelip_kit.weights.torchscript", "finelip_kit.pretrained": "finelip_kit.model.pretrained",
    "finelip_kit.settings": "finelip_kit.experiments.settings", "finelip_kit.recipe": "finelip_kit.experiments.recipe",
    "finelip_kit.records": "finelip_kit.experiments.records", "finelip_kit.paths": "finelip_kit.experiments.paths",
    "finelip_kit.shipped": "finelip_kit.experiments.shipped", "finelip_kit.cluster": "finelip_kit.experiments.cluster",
    "finelip_kit.pretrain": "finelip_kit.experiments.pretrain", "finelip_kit.ablation": "finelip_kit.experiments",
    "finelip_kit.ablation.grid": "finelip_kit.experiments.grid", "finelip_kit.ablation.params": "finelip_kit.experiments.params",
    "finelip_kit.ablation.slurm": "finelip_kit.experiments.slurm",
    "finelip_kit.ablation.analysis": "finelip_kit.experiments.analysis",
    "finelip_kit.ablation.explorer": "finelip_kit.experiments.explorer",
    "finelip_kit.plots": "finelip_kit.views.plots", "finelip_kit.viz": "finelip_kit.views.viz",
    "finelip_kit.generate": "finelip_kit.views.generate", "finelip_kit.evaluate": "finelip_kit.evaluation",
    "finelip_kit.diagnose": "finelip_kit.evaluation.diagnose",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import finelip_kit.<old name>`` gives the module at its new place (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in _MOVED else None

    def create_module(self, spec):
        return import_module(_MOVED[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
