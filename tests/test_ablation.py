"""Grid-point parameters, grid specs, records and the explorer helpers (no papermill here)."""

import json
from pathlib import Path

import matplotlib
import nbformat
import pytest

matplotlib.use("Agg")

from finelip_kit.ablation import (  # noqa: E402
    RECORD_MIMETYPE,
    AblationExplorer,
    GridParameters,
    ablation_table,
    expand_points,
    load_records,
    load_spec,
    plot_ablation,
    plain_mode_names,
    point_name,
    read_notebook_record,
    run_point,
    summary_frame,
    validate_parameters,
    write_record,
)


# ----------------------------------------------------------------------------- parameters
def test_defaults_are_the_synthetic_tiny_preset_and_map_to_model_overrides():
    params = validate_parameters()
    assert params.preset == "synthetic-tiny" and params.atrm_k == 16 and params.context_length == 248
    assert params.name == "default"
    assert params.model_overrides() == {
        "use_atrm": True, "atrm_k": 16, "atrm_k_text": None, "use_clim": True, "text.stretch": "kps",
        "text.context_length": 248, "loss": "global+fine", "fine_weight": 1.0, "score_mode": "global",
    }
    # The hardest-negatives switch is the trainer's alone (train.hardest_after_steps), from step 0 too;
    # the model's own `negatives` setting is left as the preset has it.
    assert validate_parameters().to_settings()["train.hardest_after_steps"] is None
    hardest = validate_parameters(negatives="hardest", hardest_after_steps=0).to_settings()
    assert hardest["train.hardest_after_steps"] == 0 and "model.negatives" not in hardest


@pytest.mark.parametrize("parameters, message", [
    ({"atrmk": 16}, r"unknown grid parameter\(s\) \['atrmk'\]"),
    ({"settings": {"model.atrmk": 3}}, r"unknown setting 'model.atrmk'.*did you mean \['model.atrm_k'"),
    ({"settings": {"model.atrm_k": 3}}, r"'model.atrm_k' is the grid parameter 'atrm_k'; set atrm_k instead"),
    ({"settings": ["data.differing_objects"]}, r"parameter settings must be a mapping or None \(dict \| None\), got \["),
    ({"settings": {"train.warmup_steps": -1}}, "warmup_steps must be >= 0, got -1"),       # values too, before any run
    ({"settings": {"model.embed_dim": 0}}, "embed_dim must be an integer >= 1, got 0"),
    ({"atrm_k": 99}, "atrm_k must be <= the image's 64 patch tokens"),
    ({"atrm_k": "16"}, r"parameter atrm_k must be an integer \(int\), got '16' \(str\)"),
    ({"atrm_k": 0}, "parameter atrm_k must be >= 1, got 0"),
    ({"atrm_k": True}, r"parameter atrm_k must be an integer \(int\), got True \(bool\)"),
    ({"use_atrm": 1}, "parameter use_atrm must be true or false, got 1"),
    ({"pe_mode": "rope"}, r"parameter pe_mode must be one of \['kps', 'linear', 'none', 'scratch'\], got 'rope'"),
    ({"loss": "triplet"}, "parameter loss must be one of"),
    ({"negatives": "all"}, "parameter negatives must be one of"),
    ({"score_mode": "max"}, "parameter score_mode must be one of"),
    ({"batch_size": 1}, "parameter batch_size must be >= 2"),
    ({"fine_weight": -1.0}, "parameter fine_weight must be >= 0, got -1.0"),
    ({"steps": None}, "set parameter steps or train_minutes"),
    ({"pe_mode": "none"}, "context_length must be <= 77, got 248"),
    ({"preset": "huge"}, "parameter preset must be one of"),
    ({"seed": None}, "parameter seed must not be None"),
    ({"use_clim": False}, "use_clim=False leaves no fine-grained score: set loss='global'"),
    ({"rerank_k": 0}, "parameter rerank_k must be >= 1, got 0"),
    ({"group_batches": True, "dataset": "urban1k"}, "parameter group_batches needs data that declares hard-negative groups"),
])
def test_bad_parameters_are_named_before_anything_runs(parameters, message):
    with pytest.raises((ValueError, TypeError), match=message):
        validate_parameters(**parameters)


def test_numbers_accept_ints_where_floats_are_expected():
    assert validate_parameters(fine_weight=1, lr=0).fine_weight == 1


def test_point_names_list_what_differs_sorted_and_file_safe():
    assert point_name({"atrm_k": 16}) == "default"
    assert point_name({"seed": 1, "atrm_k": 8}) == "atrm_k=8-seed=1"
    assert point_name({"loss": "global", "fine_weight": 0.5}) == "fine_weight=0.5-loss=global"
    assert point_name({"dataset": "/data/x.jsonl"}) == "dataset=_data_x.jsonl"
    assert point_name({"steps": 2, "use_atrm": False}, base={"steps": 2}) == "use_atrm=False"


# ----------------------------------------------------------------------------- specs
def test_points_cross_the_product_fixed_applies_everywhere_and_duplicates_merge():
    points = expand_points({"steps": 5}, [{}, {"atrm_k": 8}, {"atrm_k": 16}], {"seed": [0, 1]})
    assert list(points) == ["default", "seed=1", "atrm_k=8", "atrm_k=8-seed=1"]
    assert points["atrm_k=8-seed=1"] == {"steps": 5, "atrm_k": 8, "seed": 1}
    assert list(expand_points({}, None, {"atrm_k": [4, 8], "use_atrm": [True, False]})) == [
        "atrm_k=4", "atrm_k=4-use_atrm=False", "atrm_k=8", "atrm_k=8-use_atrm=False"]


def test_specs_are_validated_whole_before_any_point_runs(tmp_path):
    bad = tmp_path / "grids" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("points:\n  - {}\n  - {atrm_k: 0}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: point \{'atrm_k': 0\}: parameter atrm_k must be >= 1"):
        load_spec(bad)
    bad.write_text("product: {seed: 3}\n")
    with pytest.raises(ValueError, match="product.seed must be a non-empty list, got 3"):
        load_spec(bad)
    bad.write_text("fixed: {run_name: x}\n")
    with pytest.raises(ValueError, match="run_name is set by the grid runner"):
        load_spec(bad)
    bad.write_text("axes: {seed: [1]}\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['axes'\]"):
        load_spec(bad)
    with pytest.raises(FileNotFoundError, match="missing.yaml does not exist"):
        load_spec(tmp_path / "missing.yaml")


def test_shipped_specs_expand():
    smoke = load_spec("ablations/grids/smoke.yaml")
    assert list(smoke.points) == ["default", "use_atrm=False"]
    assert str(smoke.notebook) == "ablations/grid.ipynb" and str(smoke.runs_dir) == "ablations/runs/smoke"
    paper = load_spec("ablations/grids/paper_ablations.yaml")
    assert len(paper.points) == 45
    settings = {json.dumps({k: v for k, v in p.items() if k != "seed"}, sort_keys=True) for p in paper.points.values()}
    assert len(settings) == 15
    assert {p.get("atrm_k", 16) for p in paper.points.values()} == {4, 8, 16, 24, 39}
    assert {p.get("pe_mode", "kps") for p in paper.points.values()} == {"kps", "linear", "scratch", "none"}


# ----------------------------------------------------------------------------- records
def _record(name, status="ok", **metrics_and_params):
    params = {**GridParameters().measured(), **{k: v for k, v in metrics_and_params.items() if "/" not in k}}
    return {"run_name": name, "status": status, "parameters": params,
            "metrics": {k: v for k, v in metrics_and_params.items() if "/" in k},
            "reference": {"name": "base", "metrics": {"global/group/t2i": 25.0}}, "timings": {"total_s": 1.0}}


@pytest.fixture
def results(tmp_path):
    values = {(4, 0): 60.0, (4, 1): 62.0, (16, 0): 70.0, (16, 1): 74.0, (39, 0): 65.0, (39, 1): 65.0}
    for (k, seed), value in values.items():
        write_record(_record(f"k{k}s{seed}", atrm_k=k, seed=seed, **{"global/group/t2i": value, "global/t2i/R@1": value / 2}),
                     tmp_path)
    write_record({**_record("broken", atrm_k=8), "status": "failed", "error": "RuntimeError: boom"}, tmp_path)
    (tmp_path / "notes.json").write_text("[1, 2]")
    (tmp_path / "k4s0" / "model").mkdir(parents=True)
    (tmp_path / "k4s0" / "model" / "config.json").write_text("{}")
    (tmp_path / "k4s0" / "model" / "model.safetensors").write_bytes(b"")
    return tmp_path


def test_load_records_flattens_parameters_metrics_and_reference(results):
    frame = load_records(results)
    assert len(frame) == 7
    assert frame.attrs["skipped"] == [str(results / "notes.json")]  # saved models are not counted
    row = frame.set_index("run_name").loc["k16s1"]
    assert row["atrm_k"] == 16 and row["global/group/t2i"] == 74.0 and row["reference/global/group/t2i"] == 25.0
    assert frame.set_index("run_name").loc["broken", "error"] == "RuntimeError: boom"
    assert len(load_records(results, status="ok")) == 6
    with pytest.raises(FileNotFoundError, match="does not exist; run a grid point first"):
        load_records(results / "nowhere")


def test_ablation_table_mean_std_over_seeds_sorted_with_deltas(results):
    table = ablation_table(load_records(results), "global/group/t2i", baseline={"atrm_k": 4})
    assert list(table.index) == ["16", "39", "4"]  # the failed point is left out
    assert table.loc["16", "mean"] == 72.0 and table.loc["16", "std"] == pytest.approx(2 ** 0.5 * 2)
    assert table.loc["39", "std"] == 0.0 and list(table["n"]) == [2, 2, 2]
    assert list(table["delta"]) == [11.0, 4.0, 0.0]
    with pytest.raises(KeyError, match="metric 'global/x' is not in the records"):
        ablation_table(load_records(results), "global/x")
    with pytest.raises(KeyError, match="baseline"):
        ablation_table(load_records(results), baseline={"atrm_k": 7})


def test_plot_ablation_draws_means_in_parameter_order_and_the_reference(results):
    figure = plot_ablation(load_records(results), "global/group/t2i", x="atrm_k")
    ax = figure.axes[0]
    line = ax.lines[0]
    assert list(line.get_xdata()) == ["4", "16", "39"] and list(line.get_ydata()) == [61.0, 72.0, 65.0]
    assert any(list(other.get_ydata()) == [25.0, 25.0] for other in ax.lines[1:])  # reference row
    assert ax.get_xlabel() == "atrm_k"


def test_explorer_updates_on_every_control_and_exports(results, tmp_path):
    explorer = AblationExplorer(results, export_dir=tmp_path / "exports")
    assert explorer.x.value == "atrm_k" and list(explorer.table["mean"]) == [72.0, 65.0, 61.0]
    explorer.metric.value = "global/t2i/R@1"
    assert list(explorer.table["mean"]) == [36.0, 32.5, 30.5]
    explorer.baseline.value = "39"
    assert list(explorer.table["delta"]) == [3.5, 0.0, -2.0]
    explorer.filters["atrm_k"].value = ("4", "39")
    assert list(explorer.table.index) == ["39", "4"]
    assert explorer.status.value == "4 record(s)"
    png, csv = explorer.save()
    assert png.read_bytes()[:4] == b"\x89PNG" and csv.read_text().splitlines()[0] == "atrm_k,mean,std,n,delta"
    explorer.group.value = "seed"
    assert explorer.table.index.names == ["atrm_k", "seed"]
    with pytest.raises(ValueError, match="no successful records"):
        AblationExplorer(tmp_path / "exports")


def test_summary_frame_and_notebook_record_round_trip(tmp_path):
    record = _record("x", **{"global/t2i/R@1": 30.0, "global/group/t2i": 70.0, "fine/group/t2i": 68.0})
    frame = summary_frame(record)
    assert list(frame.index) == ["global", "fine", "reference: base"]
    assert frame.loc["global", "group/t2i"] == 70.0 and frame.loc["reference: base", "group/t2i"] == 25.0
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("attach_record(record)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={RECORD_MIMETYPE: record, "text/plain": "x"})]
    notebook.cells.append(cell)
    nbformat.write(notebook, tmp_path / "x.ipynb")
    assert read_notebook_record(tmp_path / "x.ipynb") == record
    notebook.cells[0].outputs = []
    nbformat.write(notebook, tmp_path / "y.ipynb")
    with pytest.raises(ValueError, match="carries no finelip-kit record"):
        read_notebook_record(tmp_path / "y.ipynb")


# ----------------------------------------------------------------------------- one point, in process
def test_run_point_trains_evaluates_and_writes_a_complete_record(tmp_path):
    from finelip_kit import FineLIP

    params = validate_parameters(steps=2, batch_size=8, eval_size=16, atrm_k=4, results_dir=str(tmp_path),
                                 progress=False)
    record = run_point(params)
    assert record["run_name"] == "atrm_k=4-batch_size=8-eval_size=16-steps=2" and record["status"] == "ok"
    assert json.loads((tmp_path / f"{record['run_name']}.json").read_text()) == json.loads(json.dumps(record))
    for mode in ("global", "fine", "fused"):
        for key in ("t2i/R@1", "i2t/R@1", "t2i/R@5", "i2t/R@10", "group/t2i", "group/i2t"):
            assert 0.0 <= record["metrics"][f"{mode}/{key}"] <= 100.0
    assert record["reference"]["name"] == "tiny-synthetic-clip (before fine-tuning, 77 tokens)"
    assert record["reference"]["metrics"]["global/group/t2i"] == 25.0  # 77-token truncations of a group are equal
    assert record["test_pairs"] == 16 and [h["step"] for h in record["history"]] == [1, 2]
    assert set(record["versions"]) >= {"python", "torch", "finelip-kit"} and record["parameters"]["atrm_k"] == 4
    assert record["timings"]["total_s"] >= record["timings"]["train_s"] > 0
    model = FineLIP.from_pretrained(record["model_dir"])
    assert model.config.atrm_k == 4 and model.context_length == 248
    assert not (tmp_path / record["run_name"] / "checkpoints").exists()


def test_two_stage_points_keep_plain_mode_names_and_exact_group_accuracy(tmp_path):
    from finelip_kit import FineLIP
    from finelip_kit.data import SyntheticScenes
    from finelip_kit.evaluate import evaluate_retrieval

    assert plain_mode_names({"fine@rerank20/t2i/R@1": 1.0, "global/group/t2i": 2.0}) == {"fine/t2i/R@1": 1.0, "global/group/t2i": 2.0}
    params = validate_parameters(steps=2, batch_size=8, eval_size=16, atrm_k=4, rerank_k=2, group_batches=True,
                                 reference=False, results_dir=str(tmp_path), progress=False)
    record = run_point(params)
    assert record["parameters"]["rerank_k"] == 2 and record["parameters"]["group_batches"] is True
    assert not any("@rerank" in key for key in record["metrics"]) and "fine/t2i/R@1" in record["metrics"]
    full = evaluate_retrieval(FineLIP.from_pretrained(record["model_dir"]), SyntheticScenes(split="test", size=16)).metrics
    for mode in ("fine", "fused"):
        assert record["metrics"][f"{mode}/group/t2i"] == full[f"{mode}/group/t2i"]
        assert record["metrics"][f"{mode}/group/i2t"] == full[f"{mode}/group/i2t"]


def test_shipped_record_sets_load_by_name_from_anywhere(tmp_path, monkeypatch):
    from finelip_kit.ablation import SHIPPED_RECORDS, records_folder

    monkeypatch.chdir(tmp_path)
    calibration = load_records("calibration")
    assert len(calibration) == 54 and calibration.groupby("run_name").size().max() == 1
    assert sorted(calibration["seed"].value_counts().to_dict().items()) == [(0, 18), (1, 18), (2, 18)]
    levers = load_records("capacity-levers")
    assert len(levers) == 12
    # a setting newer than a record is filled with its default (what that version did), not left empty
    older = levers[levers["run_name"] == "model.atrm_scale_init=30"].iloc[0]
    assert older["model.slot_diversity_weight"] == 0.0 and older["train.freeze_towers_steps"] == 0
    assert sorted(levers["train.freeze_towers_steps"].unique()) == [0, 100]
    assert records_folder("calibration") == SHIPPED_RECORDS["calibration"]
    (tmp_path / "calibration").mkdir()  # a folder of the user's own wins over the shipped name
    assert records_folder("calibration") == Path("calibration")
    with pytest.raises(FileNotFoundError, match="name a shipped record set: \\['calibration', 'capacity-levers', 'capacity-map', 'debias', 'demo', 'official-switches'\\]"):
        load_records("no-such-set")


# ----------------------------------------------------------------------------- hardening (issue 29)
@pytest.mark.parametrize("text, reason", [
    ('{"metrics": {"global/t2i/R@1": Infinity}}', "holds Infinity, which is not a number a record may report"),
    ('{"metrics": {"global/t2i/R@1": NaN}}', "holds NaN"),
    ('{"metrics": {"global/t2i/R@1": "90"}}', "metrics['global/t2i/R@1'] is '90', not a finite number"),
    ('{"metrics": {"global/t2i/R@1": true}}', "metrics['global/t2i/R@1'] is True, not a finite number"),
    ('{"metrics": [1, 2]}', "metrics is list, not a mapping of metric names to numbers"),
    ('{"settings": "model.atrm_k=4"}', "settings is str, not a mapping of names to values"),
    ('{"status": "great"}', "status is 'great', not 'ok' or 'failed'"),
    ('{"reference": {"metrics": 3}}', "reference is neither null nor a mapping with metrics"),
    ('{"history": {"step": 1}}', "history is not a list of logged steps"),
])
def test_a_malformed_record_is_skipped_counted_by_file_and_never_shown_as_a_number(tmp_path, text, reason):
    good = _record("good", atrm_k=4, **{"global/t2i/R@1": 50.0})
    write_record(good, tmp_path)
    bad = {**good, "run_name": "bad", "record_version": 2, "settings": {}, **json.loads(
        text.replace("Infinity", '"__inf__"').replace("NaN", '"__nan__"'))}
    (tmp_path / "bad.json").write_text(json.dumps(bad).replace('"__inf__"', "Infinity").replace('"__nan__"', "NaN"))
    frame = load_records(tmp_path)
    assert list(frame["run_name"]) == ["good"] and frame["global/t2i/R@1"].tolist() == [50.0]
    assert frame.attrs["skipped"] == [str(tmp_path / "bad.json")]
    assert reason in frame.attrs["skipped_reasons"][str(tmp_path / "bad.json")]
    from finelip_kit.records import BadRecord, read_record

    with pytest.raises(BadRecord, match="bad.json"):
        read_record(tmp_path / "bad.json")


def test_grid_points_whose_names_differ_only_in_case_are_refused():
    with pytest.raises(ValueError, match=r"points 'dataset=Mine' and 'dataset=mine' have names that differ only in case"):
        expand_points({}, [{"dataset": "Mine"}, {"dataset": "mine"}], {})
    with pytest.raises(ValueError, match=r"differ only in case"):
        expand_points({}, None, {"settings": [{"data.caption_field": "Alt"}, {"data.caption_field": "alt"}]})


def test_a_grid_is_sized_before_it_is_expanded(tmp_path):
    values = list(range(1, 11))
    with pytest.raises(ValueError, match=r"make 1,000,000,000 points, more than the 10,000 a grid may hold"):
        expand_points({}, None, {"seed": values, "atrm_k": values, "steps": values, "batch_size": values[1:] + [11],
                                 "lr": values, "lr_new": values, "eval_size": values, "hardest_after_steps": values,
                                 "rerank_k": values})


def test_a_yaml_alias_bomb_is_refused_before_it_is_built(tmp_path, capsys):
    from finelip_kit.cli import main

    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")  # 9^9 = 387 million strings
    spec = tmp_path / "grids" / "bomb.yaml"
    spec.parent.mkdir()
    spec.write_text("\n".join(lines) + "\nfixed: {steps: *i}\n")
    assert main(["grid", str(spec), "--dry-run"]) == 2
    assert "the YAML would expand to more than 100,000 values" in capsys.readouterr().err
    from finelip_kit.ablation.grid import load_yaml

    assert load_yaml("x: &x [1, 2]\ny: [*x, *x]\n", "small") == {"x": [1, 2], "y": [[1, 2], [1, 2]]}  # aliases still work


def test_paths_the_docs_name_from_the_project_root_mean_one_folder_wherever_the_kernel_starts(tmp_path, monkeypatch):
    from finelip_kit.ablation import AblationExplorer
    from finelip_kit.shipped import PROJECT_MARKER, in_project, project_root

    project = tmp_path / "project"
    (project / "ablations" / "runs" / "smoke").mkdir(parents=True)
    (project / PROJECT_MARKER).write_text("")
    write_record(_record("k4", atrm_k=4, **{"global/group/t2i": 60.0}), project / "ablations" / "runs" / "smoke")
    write_record(_record("k8", atrm_k=8, **{"global/group/t2i": 61.0}), project / "ablations" / "runs" / "smoke")
    monkeypatch.chdir(project / "ablations")  # where JupyterLab starts a kernel for ablations/explorer.ipynb
    assert project_root() == project and in_project("ablations/results") == project / "ablations" / "results"
    assert len(load_records("ablations/runs/smoke")) == 2  # before the fix: "does not exist"
    explorer = AblationExplorer("ablations/runs/smoke")
    # under the results folder (issue 31), never the kernel's working directory (ablations/ablations/exports)
    assert explorer.export_dir == project / "ablations" / "runs" / "smoke" / "exports"
    with pytest.raises(FileNotFoundError) as error:
        load_records("ablations/runs/nothing")
    message = str(error.value)
    assert f"Tried {project / 'ablations' / 'ablations' / 'runs' / 'nothing'} and {project / 'ablations' / 'runs' / 'nothing'}" \
        in message and "point at ablations/runs" not in message
    monkeypatch.chdir(tmp_path)  # outside any project: the working directory, as the CLI takes it
    assert project_root() is None and in_project("x") == tmp_path / "x"


def test_the_alignment_notebooks_auto_model_says_when_there_is_no_demo_model(tmp_path, monkeypatch, capsys):
    from finelip_kit.experiments import demo_model

    monkeypatch.chdir(tmp_path)
    model = demo_model("auto", steps=2, batch_size=8, out_dir=str(tmp_path / "alignment"))
    assert f"no `make demo` model at {tmp_path / 'ablations' / 'results' / 'default' / 'model'}" in capsys.readouterr().out
    assert model.context_length == 248


def test_points_running_side_by_side_share_the_cpus(monkeypatch, tmp_path):
    """finelip grid --workers N: each point's kernel starts with OMP_NUM_THREADS = cpus // N (torch reads it),
    unless the user set it; the runner's own environment is left as it was."""
    import os

    import finelip_kit.experiments.grid as grid

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(grid.os, "cpu_count", lambda: 8)
    seen = []
    monkeypatch.setattr(grid, "_run_grid", lambda *args: seen.append(os.environ.get("OMP_NUM_THREADS")))
    spec = grid.load_spec(Path(__file__).resolve().parents[1] / "ablations" / "grids" / "smoke.yaml", runs_dir=tmp_path)
    grid.run_grid(spec, workers=3)
    grid.run_grid(spec, workers=1)
    grid.run_grid(spec, workers=16)
    assert seen == ["2", None, "1"] and "OMP_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    grid.run_grid(spec, workers=3)
    assert seen[-1] == "5"  # the user's setting wins
