"""Ablation grids: a grid point's parameters, YAML grid specs run with papermill, and the
helpers behind the ablation explorer.

A *grid point* is one run of ``ablations/grid.ipynb``: its parameters (``GridParameters``, the
grid's short names, aliases into the settings vocabulary, checked before any training) →
``run_point`` (the one recipe, ``finelip_kit.recipe.run``) → a record
(``finelip_kit.records``) written to ``results_dir/<run_name>.json`` and attached to the
executed notebook. ``finelip grid spec.yaml`` expands a spec into points and executes each
with papermill; ``load_records`` / ``ablation_table`` / ``plot_ablation`` read records back.

    params.py    GridParameters, validate_parameters, point_name, run_point
    grid.py      specs (load_spec, expand_points), run_grid, point locks, notebook records
    analysis.py  load_records, ablation_table, plot_ablation, summary_frame
    explorer.py  AblationExplorer
"""

from ..records import RECORD_VERSION, plain_mode_names, provenance, read_record, write_record
from .analysis import (SHIPPED_RECORDS, ablation_table, along, as_text, column, complete_settings, load_records, metric_columns,
                       parameter_columns, plot_ablation, records_folder, summary_frame)
from .explorer import AblationExplorer, highlight
from .grid import (
    BUSY,
    DONE_ELSEWHERE,
    RECORD_MIMETYPE,
    GridOutcome,
    GridSpec,
    attach_record,
    expand_points,
    fold_settings,
    load_spec,
    point_lock,
    read_notebook_record,
    run_grid,
)
from .params import BOOKKEEPING, CHOICES, GridParameters, point_name, run_point, validate_parameters

__all__ = [
    "BOOKKEEPING", "BUSY", "CHOICES", "DONE_ELSEWHERE", "RECORD_MIMETYPE", "RECORD_VERSION", "SHIPPED_RECORDS", "AblationExplorer",
    "GridOutcome", "GridParameters", "GridSpec", "ablation_table", "along", "as_text", "attach_record", "column", "complete_settings", "expand_points",
    "fold_settings", "highlight", "load_records", "load_spec", "metric_columns", "parameter_columns", "plain_mode_names",
    "plot_ablation", "point_lock", "point_name", "provenance", "records_folder", "read_notebook_record", "read_record", "run_grid",
    "run_point", "summary_frame", "validate_parameters", "write_record",
]
