"""Experiments, the top of the kit: a run's settings (one vocabulary), the run presets, the one
recipe that turns them into a trained, evaluated model and a record, ablation grids, SLURM, and
the ablation explorer.

A *run* is ``recipe.run(RunSpec(settings, preset=...))``: settings (``settings.py``) on top of a
run preset (``presets.py``) → model + data + training + evaluation → a record (``records.py``)
beside the run folder. A *grid point* is one run of ``ablations/grid.ipynb``: its parameters
(``GridParameters``, the grid's short names) → ``run_point`` → the same recipe → a record written
to ``results_dir/<run_name>.json`` and attached to the executed notebook. ``finelip grid spec.yaml``
expands a spec into points and executes each with papermill (or on SLURM);
``load_records`` / ``effects`` / ``ablation_table`` / ``plot_ablation`` / ``AblationExplorer`` read records back.

    settings.py  the vocabulary: every setting's section, aliases, kinds (measured, bookkeeping, resume)
    presets.py   the run presets (synthetic-tiny, paper-b16, ..., the packaged base's stage 1)
    recipe.py    RunSpec, resolve, run, load_data, demo_model
    records.py   the record: one builder for a finished and a failed run, read / write / upgrade
    paths.py     run and grid names, owned run folders
    shipped.py   the record sets, notebooks and grid specs a checkout or a wheel carries
    pretrain.py  the packaged base model's stage 1 (pretrain_tiny)
    params.py    GridParameters, validate_parameters, point_name, run_point
    grid.py      specs (load_spec, expand_points), run_grid, point locks, notebook records
    cluster.py / slurm.py   runs and grid points as SLURM jobs (submitit / sbatch)
    analysis.py  load_records, ablation_table, plot_ablation, pooled_columns, summary_frame
    stats.py     summarize, compare (paired t over shared seeds / Welch), holm: pure, tested against scipy
    report.py    effects (each setting's paired delta against a baseline), format_effects, diff_runs, tradeoff, finelip report
    parallel.py  setting_table (metrics reduced over seeds), parallel axes, brushing, plot_parallel
    explorer.py  AblationExplorer (opens on the effects table; parallel coordinates, trade-off, diff, views)
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **{name: ".records" for name in ("RECORD_VERSION", "BadRecord", "plain_mode_names", "provenance", "read_record",
                                      "write_record")},
    **{name: ".analysis" for name in ("SHIPPED_RECORDS", "ablation_table", "along", "as_text", "column",
                                       "complete_settings", "load_records", "metric_columns", "parameter_columns",
                                       "plot_ablation", "plot_tradeoff", "pooled_columns", "records_folder",
                                       "summary_frame")},
    **{name: ".explorer" for name in ("AblationExplorer", "highlight", "highlight_effects")},
    **{name: ".report" for name in ("diff_runs", "effects", "export_effects", "format_effects", "pareto_front", "report",
                                     "tradeoff")},
    **{name: ".stats" for name in ("compare", "holm", "summarize")},
    **{name: ".parallel" for name in ("axes_of", "brushed", "plot_parallel", "setting_table")},
    **{name: ".grid" for name in ("BUSY", "DONE_ELSEWHERE", "RECORD_MIMETYPE", "GridOutcome", "GridSpec", "attach_record",
                                   "expand_points", "fold_settings", "load_spec", "point_lock", "read_notebook_record",
                                   "run_grid")},
    **{name: ".params" for name in ("BOOKKEEPING", "CHOICES", "GridParameters", "point_name", "run_point",
                                     "validate_parameters")},
    **{name: ".presets" for name in ("RUN_PRESETS", "TRAIN_PRESETS", "preset_settings")},
    **{name: ".recipe" for name in ("Resolved", "RunResult", "RunSpec", "demo_model", "demo_model_dir", "load_data",
                                     "resolve", "run", "with_validation_size")},
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
