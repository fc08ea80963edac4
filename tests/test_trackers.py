"""Experiment trackers (train.tracker): TensorBoard, W&B offline and MLflow's local file store
receive what metrics.jsonl holds, the run's settings, the evaluation tables, and a grid point's
group and tags; nothing goes to the network; a resumed run continues its tracker runs."""

import glob
import json
import struct

import pytest

from finelip_kit.recipe import RunSpec, run
from finelip_kit.train import TrainConfig
from finelip_kit.train.trackers import Trackers, tracker_names

pytest.importorskip("tensorboard")
pytest.importorskip("wandb")
pytest.importorskip("mlflow")

FAST = {"model.source": "preset:tiny", "model.vision.image_size": 32, "model.atrm_k": 4, "data.image_size": 32,
        "train.steps": 3, "train.batch_size": 8, "train.log_every": 1, "eval.size": 16, "eval.reference": False}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # recorded, so the value the kit sets is undone afterwards
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")


def wandb_records(path):
    """The protobuf records of an offline W&B run file (its LevelDB-style log: 32 KiB blocks of
    chunks with a 7-byte header; the file starts with ``:W&B``)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position:position + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (kind == 0 and length == 0):
            position += left
            continue
        pending += data[position + 7: position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def name(item):
    return item.key or "/".join(item.nested_key)


def wandb_run(folder):
    files = glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1, files
    run_info, history, config, summary, artifacts = None, {}, {}, {}, 0
    for record in wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_info = record.run
        elif kind == "history":
            items = {name(i): json.loads(i.value_json) for i in record.history.item}
            history[items["_step"]] = items
        elif kind == "config":
            config.update({name(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            summary.update({name(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "artifact":
            artifacts += 1
    return run_info, history, config, summary, artifacts


def tensorboard_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    return events


def logged(folder):
    return {r["step"]: r for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines()) if "loss" in r}


def test_tracker_names_are_one_setting():
    assert tracker_names("none") == () and tracker_names(None) == () and tracker_names("wandb") == ("wandb",)
    assert tracker_names("wandb, MLflow,wandb") == ("wandb", "mlflow") and tracker_names(["tensorboard"]) == ("tensorboard",)
    assert TrainConfig(tracker="tensorboard,mlflow").tracker == ("tensorboard", "mlflow")
    with pytest.raises(ValueError, match="tracker must be 'none' or any of .* got 'comet'"):
        TrainConfig(tracker="comet")
    with pytest.raises(ValueError, match="'none' cannot be combined"):
        tracker_names("none,wandb")


def test_a_missing_tracker_package_fails_before_training(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ValueError, match=r"names \['wandb'\], whose package is not installed: pip install wandb"):
        Trackers(("mlflow", "wandb"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_grid_point_reaches_every_tracker_with_its_group_tags_settings_and_tables(offline, tmp_path):
    grid = tmp_path / "my-grid"
    result = run(RunSpec(settings={**FAST, "train.tracker": "tensorboard,wandb,mlflow"}, name="k4", results_dir=str(grid),
                         progress=False, requested={"atrm_k": 4}))
    folder, steps = grid / "k4", logged(grid / "k4")
    assert sorted(steps) == [1, 2, 3] and "train.tracker" not in result.record["settings"]  # bookkeeping

    events = tensorboard_scalars(folder)
    for key in ("loss", "lr_new", "samples_per_s", "grad_norm"):
        # TensorBoard keeps float32: compare at float32's precision, not by rounding both sides (a value on a
        # rounding boundary would round either way)
        assert [(e.step, e.value) for e in events.Scalars(key)] == [(s, pytest.approx(steps[s][key], rel=1e-6))
                                                                    for s in steps]
    assert events.Scalars("final/fused/t2i/R@1")[0].value == pytest.approx(result.record["metrics"]["fused/t2i/R@1"])

    info, history, config, summary, artifacts = wandb_run(folder)
    assert (info.project, info.run_group, info.display_name) == ("finelip-kit", "my-grid", "k4")
    assert list(info.tags) == ["preset:synthetic-tiny", "atrm_k=4"]
    for step in steps:
        assert history[step]["loss"] == pytest.approx(steps[step]["loss"]) and history[step]["lr_new"] == steps[step]["lr_new"]
    assert config["train.steps"] == 3 and config["model.atrm_k"] == 4 and config["data.source"] == "synthetic"
    assert summary["final/global/i2t/R@1"] == result.record["metrics"]["global/i2t/R@1"]
    assert artifacts == 1  # the test table

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=(grid / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("my-grid")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "k4" and found.info.status == "FINISHED"
    assert found.data.tags["atrm_k"] == "4" and found.data.tags["preset:synthetic-tiny"] == "true"
    assert found.data.params["train.steps"] == "3" and found.data.params["model.atrm_k"] == "4"
    losses = client.get_metric_history(found.info.run_id, "loss")
    assert [(m.step, m.value) for m in losses] == [(s, pytest.approx(steps[s]["loss"])) for s in steps]
    table = json.loads((grid / "mlruns" / experiment.experiment_id / found.info.run_id / "artifacts" / "evaluation" /
                        "test.json").read_text())
    assert table["columns"][0] == "mode" and [row[0] for row in table["data"]] == ["global", "fine", "fused"]
    assert json.loads((folder / "trackers.json").read_text())["mlflow"] == found.info.run_id


def test_the_trainer_alone_opens_and_closes_its_own_trackers(offline, tmp_path):
    import torch
    from mlflow import MlflowClient

    from finelip_kit import create_model
    from finelip_kit.data import SyntheticConfig, SyntheticScenes
    from finelip_kit.train import Trainer

    torch.manual_seed(0)
    model = create_model("tiny", **{"vision.image_size": 32, "text.context_length": 200, "atrm_k": 4})
    data = SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=16)
    config = TrainConfig(out_dir=str(tmp_path / "alone" / "run"), steps=2, batch_size=8, progress=False, log_every=1,
                         tracker="tensorboard,mlflow")
    trainer = Trainer(model, data, config)
    assert not (tmp_path / "alone" / "run").exists()  # nothing opened before fit
    trainer.fit()
    steps = logged(tmp_path / "alone" / "run")
    assert [(e.step, e.value) for e in tensorboard_scalars(tmp_path / "alone" / "run").Scalars("loss")] == [
        (s, pytest.approx(steps[s]["loss"], rel=1e-6)) for s in steps]
    client = MlflowClient(tracking_uri=(tmp_path / "alone" / "mlruns").as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("alone").experiment_id])
    assert found.info.status == "FINISHED" and found.data.params["train.batch_size"] == "8"
    assert found.data.params["model.atrm_k"] == "4"


def test_a_resumed_run_continues_its_tracker_runs(offline, tmp_path):
    from mlflow import MlflowClient

    settings = {**FAST, "train.tracker": "mlflow,wandb", "train.steps": 2, "eval.size": 0}
    run(RunSpec(settings=settings, name="r", results_dir=str(tmp_path / "runs"), progress=False))
    ids = json.loads((tmp_path / "runs" / "r" / "trackers.json").read_text())
    run(RunSpec(settings={**settings, "train.steps": 4, "train.resume": "latest", "train.resume_changes": ["steps"]},
                name="r", results_dir=str(tmp_path / "runs"), progress=False))
    assert json.loads((tmp_path / "runs" / "r" / "trackers.json").read_text()) == ids
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    assert [m.step for m in client.get_metric_history(ids["mlflow"], "loss")] == [1, 2, 3, 4]
    resumed = client.get_run(ids["mlflow"])
    assert resumed.info.status == "FINISHED" and resumed.data.tags["changed.train.steps"] == "2 -> 4"
    # a new run in the same folder (not a resume) starts new tracker runs
    run(RunSpec(settings=settings, name="r", results_dir=str(tmp_path / "runs"), progress=False))
    again = json.loads((tmp_path / "runs" / "r" / "trackers.json").read_text())
    assert again["mlflow"] != ids["mlflow"] and again["wandb"] != ids["wandb"]
    assert len(client.search_runs([client.get_experiment_by_name("runs").experiment_id])) == 2  # the continued one, the new one
