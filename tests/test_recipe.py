"""The one recipe (RunSpec → run → record), its record format, and every entry point that uses it."""

import json

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from finelip_kit.ablation import (  # noqa: E402
    AblationExplorer,
    ablation_table,
    along,
    load_records,
    load_spec,
    parameter_columns,
    plot_ablation,
    run_point,
    validate_parameters,
)
from finelip_kit.cli import main as cli_main  # noqa: E402
from finelip_kit.config import SettingError  # noqa: E402
from finelip_kit.recipe import RunSpec, resolve, run  # noqa: E402
from finelip_kit.records import RECORD_VERSION, read_record, upgrade  # noqa: E402

# A small run: 32 px images, a fresh tiny model, two steps.
FAST = {"model.source": "preset:tiny", "model.vision.image_size": 32, "model.atrm_k": 4, "data.image_size": 32,
        "train.steps": 2, "train.batch_size": 8, "eval.size": 16, "eval.reference": False}


def test_a_run_trains_evaluates_and_records_every_setting(tmp_path):
    spec = RunSpec(settings={**FAST, "eval.val_size": 8, "eval.alt_captions": True, "eval.rerank_k": 3},
                   name="r", results_dir=str(tmp_path), progress=False)
    result = run(spec)
    record = result.record
    assert record["record_version"] == RECORD_VERSION == 2 and record["status"] == "ok" and record["preset"] == "synthetic-tiny"
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(record))
    settings = record["settings"]
    assert settings["model.source"] == "preset:tiny" and settings["model.atrm_k"] == 4 and settings["model.embed_dim"] == 64
    assert settings["train.steps"] == 2 and settings["data.differing_objects"] == 1 and settings["eval.rerank_k"] == 3
    assert "train.out_dir" not in settings and "train.progress" not in settings  # bookkeeping is not a setting
    assert record["parameters"] == {**FAST, "eval.val_size": 8, "eval.alt_captions": True, "eval.rerank_k": 3}
    assert record["test_pairs"] == 16 and record["val_pairs"] == 8
    assert {"global/group/t2i", "fine/t2i/R@1", "fused/group/i2t", "alt/global/t2i/R@1"} <= set(record["metrics"])
    assert set(record["val_metrics"]) >= {"global/group/t2i", "fine/group/t2i"}
    assert [h["step"] for h in record["history"]] == [1, 2]
    logged = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["final"] and logged[-1]["eval/global/group/t2i"] == round(record["val_metrics"]["global/group/t2i"], 3)
    assert (tmp_path / "r" / "checkpoints").is_dir() and (tmp_path / "r" / "model" / "model.safetensors").is_file()
    assert result.model.config.atrm_k == 4


def test_specs_are_checked_before_anything_loads(tmp_path):
    with pytest.raises(SettingError, match="train.out_dir is set by the run's results folder and name"):
        resolve(RunSpec(settings={"train.out_dir": "/elsewhere"}))
    with pytest.raises(ValueError, match=r"data settings \['differing_objects'\] apply to the synthetic data only"):
        resolve(RunSpec(settings={"data.source": "urban1k", "data.differing_objects": 3}))
    with pytest.raises(ValueError, match="eval.rerank_k must be an integer >= 1"):
        resolve(RunSpec(settings={"eval.rerank_k": 0}))
    with pytest.raises(ValueError, match="unknown training preset 'huge'"):
        resolve(RunSpec(preset="huge"))
    with pytest.raises(ValueError, match="run_name .* is refused: it holds a path separator"):
        run(RunSpec(settings=FAST, name="../x", results_dir=str(tmp_path)))
    # the preset's model overrides apply to the preset's model only
    assert resolve(RunSpec()).model_overrides["text.context_length"] == 248
    assert resolve(RunSpec(settings={"model.source": "preset:tiny"})).model_overrides == {}


def test_finelip_train_runs_the_recipe_and_writes_the_record_beside_the_run(tmp_path, capsys):
    out = tmp_path / "runs" / "x"
    settings = [f"{k}={v}" for k, v in FAST.items()] + ["progress=False"]
    assert cli_main(["train", "--out", str(out), "--eval-size", "8", "--set", *settings]) == 0
    record = json.loads((tmp_path / "runs" / "x.json").read_text())
    assert record["val_pairs"] == 8 and record["test_pairs"] == 16 and record["settings"]["model.atrm_k"] == 4
    assert (out / "checkpoints").is_dir() and (out / "model" / "config.json").is_file()
    printed = capsys.readouterr().out
    assert "validation (8 pairs)" in printed and "test (16 pairs)" in printed and "fused" in printed
    assert "test (16 pairs), protocol synthetic:test[16 pairs]:" in printed
    assert record["protocols"] == {"test": "synthetic:test[16 pairs]", "val": "synthetic:val[8 pairs]"}
    assert cli_main(["train", "--out", str(out), "--model", "tiny", "--set", "model.source=tiny-synthetic-clip"]) == 2
    assert "model.source is given twice" in capsys.readouterr().err


def test_a_grid_varies_any_setting_and_the_explorer_plots_it(tmp_path):
    spec = tmp_path / "grids" / "axes.yaml"
    spec.parent.mkdir()
    fixed = {k: v for k, v in FAST.items() if k not in ("train.steps", "train.batch_size", "eval.size", "eval.reference")}
    spec.write_text("fixed:\n" + "".join(f"  {k}: {v}\n" for k, v in fixed.items())
                    + "  steps: 1\n  batch_size: 8\n  eval_size: 8\n  reference: false\n  keep_model: false\n"
                    + "points:\n  - {}\n  - {data.differing_objects: 2}\n  - {train.fine_ramp_epochs: 0.5}\n"
                    + "  - {model.embed_dim: 32}\n")
    grid = load_spec(spec, runs_dir=tmp_path / "runs")
    assert list(grid.points) == ["default", "data.differing_objects=2", "train.fine_ramp_epochs=0.5", "model.embed_dim=32"]
    for name, parameters in grid.points.items():  # what each papermill point runs, in process
        run_point(validate_parameters(**parameters, results_dir=str(grid.runs_dir), run_name=name, progress=False))
    frame = load_records(grid.runs_dir)
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}
    varied = parameter_columns(frame)
    assert {"data.differing_objects", "train.fine_ramp_epochs", "model.embed_dim"} <= set(varied)
    assert frame.set_index("run_name").loc["model.embed_dim=32", "model.embed_dim"] == 32
    assert len(along(frame, "model.embed_dim")) == 2 and len(along(frame, "data.differing_objects")) == 2
    table = ablation_table(along(frame, "data.differing_objects"), "global/group/t2i", by=["data.differing_objects"])
    assert sorted(table.index) == ["1", "2"]
    figure = plot_ablation(along(frame, "embed_dim"), "global/group/t2i", x="model.embed_dim")
    assert figure.axes[0].get_xlabel() == "model.embed_dim" and list(figure.axes[0].lines[0].get_xdata()) == ["32", "64"]
    explorer = AblationExplorer(frame)
    assert {"data.differing_objects", "train.fine_ramp_epochs", "model.embed_dim"} <= set(explorer.x.options)
    explorer.x.value = "data.differing_objects"
    assert set(explorer.table.index.get_level_values(0)) >= {"1", "2"}


def test_the_published_calibration_records_read_as_records_and_reproduce_the_docs():
    frame = load_records("docs/calibration")
    assert len(frame) == 54 and frame.attrs["skipped"] == []
    k = ablation_table(along(frame, "atrm_k"), "global/group/t2i", by=["atrm_k"])
    assert list(k["n"]) == [3] * 5
    # docs/calibration/k.md: K = 16 66.7 ± 0.7, K = 4 67.3 ± 0.7 (mean ± sample std over seeds 0, 1, 2)
    assert (round(k.loc["16", "mean"], 1), round(k.loc["16", "std"], 1)) == (66.7, 0.7)
    assert (round(k.loc["4", "mean"], 1), round(k.loc["4", "std"], 1)) == (67.3, 0.7)
    scenes = ablation_table(along(frame, "data.differing_objects", "loss"), "global/group/t2i",
                            by=["data.differing_objects", "loss"])
    assert round(scenes.loc[("3", "global"), "mean"], 1) == 94.4  # docs/calibration/scenes.md
    record = read_record("docs/calibration/negatives_hardest_s1.json")
    assert record["settings"]["train.hardest_after_epochs"] == 0.064 and record["settings"]["train.seed"] == 1
    assert "alt/global/t2i/R@1" in record["metrics"] and "global/group/t2i" in record["val_metrics"]


def test_version_1_grid_records_are_read_through_the_aliases(tmp_path):
    v1 = {"record_version": 1, "run_name": "old", "status": "ok", "metrics": {"global/group/t2i": 60.0},
          "parameters": {"preset": "synthetic-tiny", "atrm_k": 8, "pe_mode": "linear", "negatives": "hardest",
                         "hardest_after_steps": 60, "lr": None, "seed": 2}}
    record = upgrade(v1)
    assert record["record_version"] == 2
    assert record["settings"] == {"model.atrm_k": 8, "model.text.stretch": "linear",
                                  "train.hardest_after_steps": 60, "train.seed": 2}
    assert upgrade([1, 2]) is None and upgrade({"status": "ok"}) is None
    (tmp_path / "old.json").write_text(json.dumps(v1))
    row = load_records(tmp_path).iloc[0]
    assert row["atrm_k"] == 8 and row["pe_mode"] == "linear" and row["context_length"] == 248  # filled from the preset


def test_pretrain_tiny_through_the_recipe_equals_its_direct_form(tmp_path):
    from finelip_kit.data import CaptionView, SyntheticScenes
    from finelip_kit.model import create_model
    from finelip_kit.pretrain import BASE_MODEL, PRETRAIN, pretrain_settings
    from finelip_kit.train import TrainConfig, Trainer

    result = run(RunSpec(settings={**pretrain_settings(steps=2, seed=0), "train.batch_size": 16},
                         name="run", results_dir=str(tmp_path / "recipe"), keep_model=False, progress=False))
    torch.manual_seed(0)  # the previous implementation, step by step
    model = create_model("tiny", **BASE_MODEL)
    config = TrainConfig(out_dir=str(tmp_path / "direct"), steps=2, batch_size=16, lr_backbone=PRETRAIN["lr"],
                         lr_new=PRETRAIN["lr"], warmup_steps=PRETRAIN["warmup_steps"], seed=0, progress=False,
                         log_every=50, keep_last=1)
    Trainer(model, CaptionView(SyntheticScenes(split="train"), "alt_caption"), config, eval_modes=("global",)).fit()
    for (name, a), b in zip(model.state_dict().items(), result.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_failed_point_sits_under_its_own_settings(tmp_path):
    from finelip_kit.ablation.grid import _settings_of
    from finelip_kit.records import write_record

    write_record({"record_version": RECORD_VERSION, "run_name": "k8", "status": "failed", "preset": "synthetic-tiny",
                  "settings": _settings_of({"atrm_k": 8, "steps": 2}), "parameters": {"atrm_k": 8, "steps": 2},
                  "error": "RuntimeError: boom"}, tmp_path)
    row = load_records(tmp_path).iloc[0]
    assert row["status"] == "failed" and row["atrm_k"] == 8 and row["steps"] == 2 and row["pe_mode"] == "kps"


def test_synthetic_training_can_be_evaluated_on_other_data(tmp_path):
    from finelip_kit.data import SyntheticScenes, write_jsonl
    from finelip_kit.recipe import load_data

    write_jsonl(SyntheticScenes(split="test", size=6), tmp_path / "other")
    spec = resolve(RunSpec(settings={"data.eval_source": str(tmp_path / "other" / "test.jsonl"), "eval.size": 4,
                                     "eval.val_size": 0}))
    train, val, test = load_data(spec.data, spec.eval)
    assert isinstance(train, SyntheticScenes) and val is None and len(test) == 4


def test_the_binding_probe_scores_binding_groups_of_the_runs_scenes(tmp_path):
    from finelip_kit.evaluate import evaluate_retrieval
    from finelip_kit.recipe import binding_pairs, load_data
    from finelip_kit.records import plain_mode_names

    spec = RunSpec(settings={**FAST, "eval.binding": True}, name="b", results_dir=str(tmp_path), progress=False)
    result = run(spec)
    pairs = binding_pairs(resolve(spec).data, 16)
    assert pairs.config.group_kind == "binding" and pairs.config.image_size == 32 and len(pairs) == 16
    expected = plain_mode_names(evaluate_retrieval(result.model, pairs).metrics)
    binding = {k[len("binding/"):]: v for k, v in result.record["metrics"].items() if k.startswith("binding/")}
    assert binding == expected and {"global/group/t2i", "fine/group/t2i", "fused/group/i2t"} <= set(binding)
    test_pairs = load_data(resolve(spec).data, resolve(spec).eval)[2]
    assert pairs[0]["caption"] != test_pairs[0]["caption"] and pairs[0]["late_token"] >= 75  # scenes of their own


def test_the_binding_probe_is_refused_off_the_synthetic_data(tmp_path):
    from finelip_kit.data import SyntheticScenes, write_jsonl
    from finelip_kit.recipe import load_data

    write_jsonl(SyntheticScenes(split="test", size=6), tmp_path / "other")
    spec = resolve(RunSpec(settings={"data.eval_source": str(tmp_path / "other" / "test.jsonl"), "eval.binding": True}))
    with pytest.raises(ValueError, match="eval.binding is a probe of the synthetic benchmark.*set eval.binding=false"):
        load_data(spec.data, spec.eval)
    with pytest.raises(ValueError, match="eval.binding must be true or false, got 'yes'"):
        resolve(RunSpec(settings={"eval.binding": "yes"}))


def test_pretraining_takes_more_settings_for_other_regimes(tmp_path):
    from finelip_kit import FineLIP
    from finelip_kit.pretrain import pretrain_settings, pretrain_tiny

    with pytest.raises(ValueError, match=r"pretraining settings \['train.steps'\] are stage 1's own"):
        pretrain_settings(extra={"steps": 5})
    dense = {"data.grid_size": 8, "data.min_objects": 14, "data.max_objects": 20}
    assert pretrain_settings(steps=3, extra={"model.embed_dim": 4, **dense})["model.embed_dim"] == 4
    assert cli_main(["pretrain-tiny", "--out", str(tmp_path / "d4"), "--steps", "2", "--set", "model.embed_dim=4",
                     "train.batch_size=8", "data.grid_size=8", "data.min_objects=14", "data.max_objects=20"]) == 0
    metrics = json.loads((tmp_path / "d4" / "metrics.json").read_text())
    assert metrics["settings"] == {"model.embed_dim": 4, "train.batch_size": 8, **dense} and metrics["steps"] == 2
    base = FineLIP.from_pretrained(str(tmp_path / "d4"))
    assert base.config.embed_dim == 4 and base.context_length == 77 and base.image_atrm is None
    # the same stage with no extra settings is the packaged base's recipe
    assert pretrain_settings(steps=2) == {**pretrain_settings(steps=2, extra={})}
    assert pretrain_tiny.__defaults__[-1] is None


def test_a_point_with_probes_plots_its_modes_and_probes_apart():
    import matplotlib.pyplot as plt

    from finelip_kit.plots import plot_run, plot_scores

    metrics = {f"{p}{m}/{k}": v for p, base in (("", 60.0), ("binding/", 30.0)) for m, v in
               (("global", base), ("fine", base + 1), ("fused", base + 2)) for k in ("group/t2i", "t2i/R@1")}
    metrics["alt/global/t2i/R@1"] = 12.0
    record = {"run_name": "p", "metrics": metrics, "reference": {"metrics": {"global/group/t2i": 25.0}},
              "history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]}
    ax = plot_scores(record).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["global", "fine", "fused", "binding/global", "binding/fine",
                                                            "binding/fused", "reference"]
    assert [b.get_height() for b in ax.patches] == [60.0, 61.0, 62.0, 30.0, 31.0, 32.0, 25.0]
    ax = plot_scores(record, metric="t2i/R@1").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "alt/global"  # alt captions: the global score only
    plt.close("all")
    plot_run(record)
    plt.close("all")


def test_run_presets_have_one_home_and_the_grid_reads_its_defaults_there():
    import dataclasses

    from finelip_kit.experiments import params, presets
    from finelip_kit.experiments.pretrain import BASE_MODEL, PRETRAIN, STAGE_1, pretrain_settings

    from finelip_kit.recipe import TRAIN_PRESETS

    assert TRAIN_PRESETS is presets.RUN_PRESETS  # the old name, the same object
    tiny = presets.preset_settings("synthetic-tiny")
    defaults = {f.name: f.default for f in dataclasses.fields(params.GridParameters)}
    for short in ("dataset", "use_atrm", "atrm_k", "use_clim", "pe_mode", "context_length", "loss", "fine_weight",
                  "steps", "batch_size", "eval_size", "reference"):
        assert defaults[short] == tiny[params.ALIASES[short]], short
    # the packaged base's stage 1 is a run preset; its settings are the preset's plus steps and seed
    assert STAGE_1 == "synthetic-tiny-base" and BASE_MODEL == presets.RUN_PRESETS[STAGE_1]["model_overrides"]
    assert pretrain_settings(steps=7, seed=3) == {**presets.preset_settings(STAGE_1), "train.steps": 7, "train.seed": 3}
    assert (PRETRAIN["steps"], PRETRAIN["batch_size"], PRETRAIN["lr"], PRETRAIN["warmup_steps"]) == (600, 128, 2e-3, 50)
    with pytest.raises(ValueError, match=r"unknown training preset 'tiny' \(a run preset; an architecture"):
        presets.preset_settings("tiny")


def test_one_record_builder_for_a_finished_run_and_a_failed_point():
    import pytest

    from finelip_kit.ablation.grid import failed_record
    from finelip_kit.records import BadRecord, new_record

    head = ("record_version", "run_name", "status", "preset", "settings", "parameters")
    ok = new_record("a", "ok", preset="synthetic-tiny", settings={"model.atrm_k": 8}, parameters={"atrm_k": 8},
                    metrics={"global/t2i/R@1": 12.5}, history=[])
    failed = failed_record("b", {"atrm_k": 8, "steps": 2}, "RuntimeError: boom", timings={"total_s": 1.0})
    for record in (ok, failed):
        assert tuple(record)[:6] == head and record["record_version"] == RECORD_VERSION
        assert {"versions", "git_commit", "host", "created"} <= set(record)  # provenance, on both
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: boom"
    assert failed["settings"]["model.atrm_k"] == 8 and failed["parameters"]["steps"] == 2
    with pytest.raises(ValueError, match="status must be one of"):
        new_record("c", "done", preset=None, settings={}, parameters={})
    with pytest.raises(ValueError, match="needs its error as text"):
        new_record("c", "failed", preset=None, settings={}, parameters={})
    with pytest.raises(BadRecord, match=r"metrics\['global/t2i/R@1'\] is nan, not a finite number"):
        new_record("c", "ok", preset=None, settings={}, parameters={}, metrics={"global/t2i/R@1": float("nan")})


def test_one_builder_for_every_table_of_metrics():
    from finelip_kit.cli import summary_table
    from finelip_kit.evaluation.tables import metrics_table
    from finelip_kit.records import summary_frame

    metrics = {"global/i2t/R@1": 10.0, "global/i2t/R@5": 30.0, "global/t2i/R@1": 12.0, "global/t2i/R@5": 31.0,
               "global/group/i2t": 40.0, "global/group/t2i": 45.0, "fine@rerank4/i2t/R@1": 11.0,
               "fine@rerank4/t2i/R@1": 13.0, "alt/global/t2i/R@1": 5.0}
    chance = {"group/i2t": 25.0, "group/t2i": 25.0}
    by_mode = metrics_table(metrics, chance=chance)
    assert list(by_mode.index) == ["global", "fine@rerank4", "chance"]  # alt/... is another family
    assert by_mode.loc["global", "group/t2i"] == 45.0 and by_mode.loc["chance", "group/i2t"] == 25.0
    by_direction = metrics_table(metrics, by="direction", chance=chance, decimals=2)
    assert list(by_direction.columns) == ["R@1", "R@5", "group acc", "group chance"]
    assert by_direction.loc[("global", "t2i"), "group acc"] == 45.0
    assert by_direction.loc[("fine@rerank4", "i2t"), "R@1"] == 11.0
    text = summary_table(metrics, chance).splitlines()
    assert text[1].split() == ["global", "10.0", "12.0", "30.0", "31.0", "40.0", "45.0"]
    assert text[-1].split() == ["chance", "25.0", "25.0"]
    record = {"metrics": metrics, "reference": {"name": "base", "metrics": {"global/t2i/R@1": 9.0}}}
    frame = summary_frame(record)
    assert list(frame.index) == ["global", "fine@rerank4", "reference: base"]
    assert frame.loc["reference: base", "t2i/R@1"] == 9.0
