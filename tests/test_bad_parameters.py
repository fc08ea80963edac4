"""Bad parameters and wrong results: every bad value is refused by name before anything runs
(CLI, grid notebook parameters, grid YAML, Python configs), and no wrong number is ever
reported as a result (non-finite scores, all-skipped training, changed resume settings)."""

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from finelip_kit import create_model
from finelip_kit.ablation import load_spec, validate_parameters, write_record
from finelip_kit.cli import main as cli_main
from finelip_kit.data import SyntheticConfig, SyntheticScenes
from finelip_kit.data.transforms import to_rgb
from finelip_kit.evaluate import evaluate_retrieval
from finelip_kit.recipe import train_config
from finelip_kit.train import Trainer, TrainConfig

from test_train import SMALL, tiny  # the small model of the training tests (32 px, 200 tokens, K = 4)


def test_scenes(size=8):
    return SyntheticScenes(SyntheticConfig(image_size=32), split="test", size=size)


test_scenes.__test__ = False


def trainer(tmp_path, model=None, **options):
    base = dict(out_dir=str(tmp_path / "run"), steps=2, batch_size=8, warmup_steps=0, progress=False, log_every=1)
    data = SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=32)
    return Trainer(model or tiny(loss="global"), data, TrainConfig(**{**base, **options}))


# ----------------------------------------------------------------------------- wrong results
@pytest.mark.parametrize("mode", ["global", "fine", "fused"])
def test_a_nan_model_fails_evaluation_instead_of_scoring_100(mode):
    model = tiny()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=rf"of \d+ {mode} scores are not finite"):
        evaluate_retrieval(model, test_scenes(), modes=(mode,))


def test_nan_fine_scores_are_named_as_fine(monkeypatch):
    model = tiny()
    with torch.no_grad():
        model.image_atrm.apply(lambda m: [p.fill_(float("nan")) for p in m.parameters(recurse=False)])
    with pytest.raises(FloatingPointError, match=r"64 of 64 fine scores are not finite"):
        evaluate_retrieval(model, test_scenes(), modes=("fine",))
    with pytest.raises(FloatingPointError, match=r"fine scores are not finite"):
        evaluate_retrieval(model, test_scenes(), modes=("fine",), rerank_k=2)


def test_every_step_skipped_fails_the_run(tmp_path):
    model = tiny(loss="global+fine")
    model.config.fine_weight = math.inf  # what `-p fine_weight inf` used to reach
    with pytest.raises(FloatingPointError, match=r"every one of the 2 training step\(s\) had a non-finite loss"):
        trainer(tmp_path, model).fit()


def test_an_infinite_fine_weight_is_refused_at_every_entry():
    with pytest.raises(ValueError, match="parameter fine_weight must be finite, got inf"):
        validate_parameters(fine_weight=math.inf)
    with pytest.raises(ValueError, match="fine_weight must be finite, got inf"):
        create_model("tiny", fine_weight=math.inf)
    with pytest.raises(ValueError, match="training setting lr_new must be finite, got inf"):
        TrainConfig(lr_new=math.inf)


def test_records_are_strict_json_and_refuse_non_finite_results(tmp_path):
    record = {"run_name": "r", "status": "ok", "metrics": {"global/t2i/R@1": 10.0},
              "history": [{"step": 1, "loss": math.inf}, {"step": 2, "loss": 1.5}]}
    path = write_record(record, tmp_path)
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["history"] == [{"step": 1, "loss": None}, {"step": 2, "loss": 1.5}]
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_record({**record, "run_name": "s", "metrics": {"global/t2i/R@1": math.nan}}, tmp_path)
    assert not (tmp_path / "s.json").exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("changed, keys", [
    ({"batch_size": 16}, ["batch_size"]), ({"lr_backbone": 5e-4}, ["lr_backbone"]), ({"seed": 3}, ["seed"]),
    ({"steps": 4}, ["steps"]), ({"accumulation": 2, "warmup_steps": 1}, ["accumulation", "warmup_steps"]),
])
def test_resuming_with_changed_settings_is_refused_naming_them(tmp_path, changed, keys):
    trainer(tmp_path).fit()
    with pytest.raises(ValueError, match=r"cannot resume .*differ from the checkpoint's \(" + ".*".join(keys)):
        trainer(tmp_path, resume="latest", **changed).fit()


def test_resuming_may_extend_the_budget_when_asked_and_ignores_bookkeeping(tmp_path):
    trainer(tmp_path).fit()
    with pytest.raises(ValueError, match=r"pass resume_changes=\['steps'\]"):
        trainer(tmp_path, resume="latest", steps=4).fit()
    extended = trainer(tmp_path, resume="latest", steps=4, resume_changes=("steps",), log_every=5, keep_last=3)
    extended.fit()
    assert extended.step == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) == [1, 2, 4]  # step 3 not logged (log_every 5); nothing repeated
    with pytest.raises(ValueError, match=r"resume_changes may name only"):
        TrainConfig(resume_changes=("batch_size",))


def test_metrics_log_has_no_repeated_steps_after_a_resume(tmp_path):
    trainer(tmp_path, steps=4, save_every=2, keep_last=5).fit()
    checkpoints = tmp_path / "run" / "checkpoints"
    import shutil

    shutil.rmtree(checkpoints / "step_0000004")  # as if killed after logging step 4 but before saving it
    trainer(tmp_path, steps=4, save_every=2, keep_last=5, resume="latest").fit()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_stale_temporary_checkpoints_of_dead_processes_are_removed(tmp_path):
    root = tmp_path / "run" / "checkpoints"
    dead = root / ".tmp_step_0000002_999999999"  # no such pid
    dead.mkdir(parents=True)
    (dead / "model.safetensors").write_bytes(b"partial")
    trainer(tmp_path, steps=1).fit()
    assert not dead.exists()
    assert [p.name for p in root.iterdir()] == ["step_0000001"]


# ----------------------------------------------------------------------------- model and data values
def test_atrm_k_larger_than_the_tokens_is_refused():
    with pytest.raises(ValueError, match=r"atrm_k must be <= the image's 16 patch tokens \(32px / patch 8\), got 17"):
        create_model("tiny", **{**SMALL, "atrm_k": 17})
    with pytest.raises(ValueError, match=r"must be <= text.context_length 200, got 201"):
        create_model("tiny", **{**SMALL, "atrm_k_text": 201})


def test_fine_modes_on_a_model_without_clim_are_refused_not_replaced():
    model = tiny(use_clim=False, loss="global")
    with pytest.raises(ValueError, match=r"scoring modes \['fused'\] need CLIM.*--modes global"):
        evaluate_retrieval(model, test_scenes(), modes=("fused",))
    assert set(k.split("/")[0] for k in evaluate_retrieval(model, test_scenes()).metrics) == {"global"}


def test_evaluation_fuses_with_the_models_own_weight():
    def renamed(metrics, mode):
        return {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(mode + "/")}

    data = test_scenes(16)
    for weight, same_as in ((0.0, "global"), (1.0, "fine")):
        model = tiny(fuse_weight=weight)
        result = evaluate_retrieval(model, data)  # no fuse_weight given: the model's own
        assert renamed(result.metrics, "fused") == renamed(result.metrics, same_as)


def test_a_dark_16_bit_image_stays_dark():
    dark = Image.fromarray((np.ones((8, 8)) * 200).astype(np.uint16))  # 200 / 65535: nearly black
    saved = io.BytesIO()
    dark.save(saved, "PNG")
    reopened = Image.open(io.BytesIO(saved.getvalue()))
    assert reopened.mode == "I;16"
    assert np.asarray(to_rgb(reopened)).max() == 1  # round(200 / 65535 * 255)
    bright = Image.fromarray((np.ones((8, 8)) * 65535).astype(np.uint16))
    assert np.asarray(to_rgb(bright)).min() == 255


# ----------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("setting, message", [
    ("lr_backbone=abc", "training setting lr_backbone must be a number"),
    ("epochs=abc", "training setting epochs must be a number"),
    ("warmup_steps=abc", "training setting warmup_steps must be an integer"),
    ("warmup_steps=2.5", "training setting warmup_steps must be an integer"),
    ("steps=0", "steps must be an integer >= 1"),
    ("lr_new=inf", "training setting lr_new must be finite"),
    ("batch_size=1", "batch_size must be an integer >= 2"),
    ("bogus=1", "unknown setting 'bogus'"),
    ("model.atrm_k=0", "atrm_k must be an integer >= 1"),
    ("model.atrm_k=99", "atrm_k must be <= the image's 64 patch tokens (64px / patch 8), got 99"),
])
def test_train_settings_are_refused_by_name_with_exit_2(tmp_path, capsys, setting, message):
    status = cli_main(["train", "--out", str(tmp_path / "run"), "--set", setting, "progress=False"])
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
    (["--rerank-k", "-5"], "--rerank-k: must be >= 1, got -5"),
    (["--rerank-k", "0"], "--rerank-k: must be >= 1, got 0"),
    (["--fuse-weight", "7"], r"--fuse-weight: must be in [0.0, 1.0], got 7"),
    (["--fuse-weight", "nan"], r"--fuse-weight: must be in [0.0, 1.0], got nan"),
    (["--size", "x"], "--size: expected an integer, got 'x'"),
    (["--modes", "max"], "--modes: invalid choice: 'max'"),
])
def test_eval_options_are_range_checked(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["eval", "--model", "tiny-synthetic-clip", "--data", "synthetic", *arguments])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_eval_of_fused_scores_on_a_model_without_clim_exits_2(tmp_path, capsys):
    folder = tmp_path / "model"
    tiny(use_clim=False, loss="global").save_pretrained(str(folder))
    assert cli_main(["eval", "--model", str(folder), "--data", "synthetic", "--size", "8", "--modes", "fused"]) == 2
    assert "need CLIM" in capsys.readouterr().err


# ----------------------------------------------------------------------------- grid YAML and points
def spec(tmp_path, text: str):
    (tmp_path / "grids").mkdir(exist_ok=True)
    path = tmp_path / "grids" / "g.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("points: [ {atrm_k: 4\n", "is not valid YAML"),
    ("name: ../../x\n", "grid name '../../x' is refused"),
    ("name: a b\n", "grid name 'a b' is refused"),
    ("points:\n  - {dataset: 'a b.jsonl'}\n  - {dataset: 'a_b.jsonl'}\n", "two different points share the name"),
    ("points:\n  - {run_name: x}\n", "run_name is set by the grid runner"),
    ("points:\n  - {fine_weight: .inf}\n", "parameter fine_weight must be finite, got inf"),
    ("fixed: {atrm_k: 0}\n", "parameter atrm_k must be >= 1"),
    ("product: {seed: 3}\n", "product.seed must be a non-empty list"),
    ("surprise: 1\n", "unknown key(s) ['surprise']"),
])
def test_bad_grid_specs_are_refused_with_exit_2(tmp_path, capsys, text, message):
    assert cli_main(["grid", str(spec(tmp_path, text)), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_a_point_name_over_the_file_name_limit_is_shortened_not_fatal(tmp_path):
    long_path = "data/" + "x" * 300 + ".jsonl"
    grid = load_spec(spec(tmp_path, f"points:\n  - {{dataset: '{long_path}'}}\n  - {{dataset: '{long_path}2'}}\n"))
    names = list(grid.points)
    assert len(names) == 2 and len(set(names)) == 2
    assert all(len(n.encode()) <= 200 and n.startswith("dataset=data_xxx") for n in names)


def test_identical_points_written_two_ways_are_one_point(tmp_path):
    grid = load_spec(spec(tmp_path, "points:\n  - {atrm_k: 8}\n  - {atrm_k: 8, seed: 0}\n"))
    assert list(grid.points) == ["atrm_k=8"]


def test_train_config_errors_name_unknown_keys():
    with pytest.raises(KeyError, match="unknown setting 'train.lr'"):
        train_config("synthetic-tiny", lr=1.0)


def test_the_effective_length_curve_fuses_with_the_models_own_weight():
    from finelip_kit.evaluate import effective_length_curve

    data = test_scenes(16)
    for weight, same_as in ((0.0, "global"), (1.0, "fine")):
        model = tiny(fuse_weight=weight)
        fused = effective_length_curve(model, data, lengths=(20, 77), mode="fused")
        assert fused.equals(effective_length_curve(model, data, lengths=(20, 77), mode=same_as))  # before: 0.2 always


def test_a_hub_dataset_keeps_the_callers_on_error(monkeypatch):
    import datasets
    from PIL import Image

    from finelip_kit.data import load_pairs

    rows = [{"image": Image.new("RGB", (8, 8), (i, 0, 0)), "caption": caption}
            for i, caption in enumerate(["a red square", "   ", "a blue circle"])]
    hub = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: hub)
    with pytest.raises(ValueError, match=r"org/set\[1\].*empty or whitespace-only caption.*on_error='skip'"):
        load_pairs("org/set")
    pairs = load_pairs("org/set", on_error="skip")  # before the fix: raised whatever the caller asked
    assert len(pairs) == 2 and pairs.report.skipped == 1


def test_the_cli_and_notebook_02_decide_the_validation_size_in_one_place():
    from finelip_kit.recipe import with_validation_size

    assert with_validation_size({}, "synthetic-tiny", 400) == {"eval.val_size": 400}
    # a paper preset brings its own data: not synthetic (notebook 02 used to treat data=None as synthetic)
    assert with_validation_size({}, "paper-b16", 400) == {}
    assert with_validation_size({"data.val_split": "eval"}, "paper-b16", 400) == {"data.val_split": "eval", "eval.val_size": None}
    assert with_validation_size({"data.source": "synthetic"}, "paper-b16", 50)["eval.val_size"] == 50
    assert with_validation_size({"eval.val_size": 8}, "synthetic-tiny", 400)["eval.val_size"] == 8
