"""Notebooks and the grid runner, executed for real with papermill and tiny parameters (slow)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = {"steps": 2, "batch_size": 8, "eval_size": 16}
pytestmark = pytest.mark.slow


def execute(notebook: str, output: Path, **parameters):
    import papermill

    return papermill.execute_notebook(str(ROOT / notebook), str(output), parameters=parameters, progress_bar=False,
                                      kernel_name="python3", cwd=str(output.parent))


def outputs_of(notebook) -> str:
    return "\n".join(str(o.get("text", "")) + json.dumps(o.get("data", {}).get("text/plain", ""))
                     for cell in notebook.cells for o in cell.get("outputs", []))


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("*/*.ipynb")))
def test_committed_notebooks_carry_no_outputs(path):
    notebook = nbformat.read(str(ROOT / path), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path}: clear outputs before committing"
    assert sum("parameters" in c.metadata.get("tags", []) for c in notebook.cells) == 1, f"{path}: one parameters cell"


def test_quickstart_trains_evaluates_and_compares_with_the_77_token_base(tmp_path):
    notebook = execute("notebooks/01_quickstart.ipynb", tmp_path / "out.ipynb", lengths=[10, 77, 248], **TINY)
    text = outputs_of(notebook)
    assert "77-token base" in text and "FineLIP 248 (fused)" in text
    assert (tmp_path / "runs/quickstart/model/model.safetensors").is_file()
    assert (tmp_path / "runs/quickstart/metrics.jsonl").read_text().count('"loss"') == 2
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # samples, loss curve, two effective-length curves


def test_train_notebook_takes_options_and_saves_the_model(tmp_path):
    execute("notebooks/02_train.ipynb", tmp_path / "out.ipynb", out_dir="run", eval_size=16,
            settings={"train.steps": 3, "train.batch_size": 8, "model.atrm_k": 4, "eval.size": 16})
    logged = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 3]
    assert any(r.get("final") and "eval/global/group/t2i" in r for r in logged)
    assert json.loads((tmp_path / "run/model/config.json").read_text())["config"]["atrm_k"] == 4


def test_retrieval_eval_notebook_writes_results_with_the_paper_table(tmp_path):
    notebook = execute("notebooks/03_retrieval_eval.ipynb", tmp_path / "out.ipynb", size=16, lengths=[20, 77],
                       out="results.json")
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["model"] == "tiny-synthetic-clip" and result["metrics"]["global/group/t2i"] == 25.0
    assert result["protocol"] == "synthetic:test[16 pairs]"
    assert "this run" in outputs_of(notebook)  # the paper-layout table (no published rows for synthetic)


def test_grid_notebook_writes_and_attaches_its_record(tmp_path):
    from finelip_kit.ablation import read_notebook_record

    execute("ablations/grid.ipynb", tmp_path / "out.ipynb", atrm_k=4, results_dir="results",
            settings={"eval.binding": True, "eval.alt_captions": True}, **TINY)  # probes: their own bars
    attached = read_notebook_record(tmp_path / "out.ipynb")
    written = json.loads((tmp_path / "results" / f"{attached['run_name']}.json").read_text())
    assert attached == written and attached["status"] == "ok" and attached["parameters"]["atrm_k"] == 4
    assert {"binding/fine/group/t2i", "alt/global/t2i/R@1"} <= set(written["metrics"])
    nb = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    assert nb.metadata.papermill.parameters["atrm_k"] == 4


def test_grid_notebook_rejects_a_misspelt_parameter_before_training(tmp_path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match=r"unknown grid parameter\(s\) \['atrmk'\]"):
        execute("ablations/grid.ipynb", tmp_path / "out.ipynb", atrmk=4, results_dir="results", **TINY)
    assert not (tmp_path / "results").exists()


def finelip(*args, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "finelip_kit.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=900)


def test_grid_runner_resumes_forces_and_isolates_failures(tmp_path, monkeypatch):
    from finelip_kit.ablation import read_notebook_record

    (tmp_path / "grids").mkdir()
    (tmp_path / "grid.ipynb").write_bytes((ROOT / "ablations/grid.ipynb").read_bytes())
    spec = tmp_path / "grids" / "t.yaml"
    tracked = "settings: {train.tracker: mlflow}, " if importlib.util.find_spec("mlflow") else ""
    spec.write_text(f"fixed: {{steps: 2, batch_size: 8, eval_size: 16, reference: false, keep_model: false, {tracked}}}\n"
                    "points:\n  - {}\n  - {use_atrm: false}\n")
    runs = tmp_path / "runs" / "t"

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = finelip("grid", str(spec), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "ran 2, skipped 0 (already recorded), failed 0" in first.stdout
    assert "without encryption" not in first.stdout + first.stderr  # the points' kernels talk over unix sockets
    # the grid ends with what mattered (finelip report's table): one seed a side, so no test and no mark
    assert "2 ok record(s) in 2 setting(s)" in first.stdout
    assert [line.split()[-1] for line in first.stdout.splitlines() if line.startswith("use_atrm=False")] == ["none"]
    for name in ("default", "use_atrm=False"):
        record = json.loads((runs / f"{name}.json").read_text())
        assert record["status"] == "ok" and read_notebook_record(runs / f"{name}.ipynb")["run_name"] == name
    assert json.loads((runs / "use_atrm=False.json").read_text())["parameters"]["use_atrm"] is False
    if tracked:  # the points, run by papermill, land in one MLflow experiment named after the grid
        from mlflow import MlflowClient

        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the points' processes set it
        client = MlflowClient(tracking_uri=(runs / "mlruns").as_uri())
        points = client.search_runs([client.get_experiment_by_name("t").experiment_id])
        assert {r.info.run_name: (r.data.tags["group"], r.data.tags["use_atrm"], r.info.status) for r in points} == {
            "default": ("t", "True", "FINISHED"), "use_atrm=False": ("t", "False", "FINISHED")}
        assert all(len(client.get_metric_history(r.info.run_id, "loss")) >= 1 for r in points)
    stamps = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.ipynb")}

    again = finelip("grid", str(spec), cwd=tmp_path)
    assert again.returncode == 0 and "ran 0, skipped 2" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in runs.glob("*.ipynb")} == stamps

    forced = finelip("grid", str(spec), "--force", "--workers", "2", cwd=tmp_path)
    assert forced.returncode == 0 and "ran 2, skipped 0" in forced.stdout
    assert all(p.stat().st_mtime_ns > stamps[p.name] for p in runs.glob("*.ipynb"))

    # A point that raises is recorded as failed; the others still run; the command exits 1.
    spec.write_text("fixed: {steps: 2, batch_size: 8, eval_size: 16, reference: false, keep_model: false}\n"
                    "points:\n  - {dataset: missing.jsonl}\n  - {atrm_k: 4}\n")
    failing = finelip("grid", str(spec), cwd=tmp_path)
    assert failing.returncode == 1
    assert "ran 1, skipped 0 (already recorded), failed 1" in failing.stdout
    assert "FAILED dataset=missing.jsonl" in failing.stdout
    failed = json.loads((runs / "dataset=missing.jsonl.json").read_text())
    assert failed["status"] == "failed" and "missing.jsonl" in failed["error"]
    assert failed["notebook"].endswith("dataset=missing.jsonl.ipynb") and Path(failed["notebook"]).is_file()
    assert json.loads((runs / "atrm_k=4.json").read_text())["status"] == "ok"

    # A failed point is not skipped on the next run (only successes are).
    retry = finelip("grid", str(spec), cwd=tmp_path)
    assert "ran 0, skipped 1 (already recorded), failed 1" in retry.stdout


def test_grid_runner_refuses_an_invalid_spec_before_running_anything(tmp_path):
    (tmp_path / "grids").mkdir()
    spec = tmp_path / "grids" / "bad.yaml"
    spec.write_text("points:\n  - {}\n  - {pe_mode: rope}\n")
    result = finelip("grid", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert "parameter pe_mode must be one of" in result.stderr and "'rope'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_explorer_notebook_reads_a_grid_and_exports(tmp_path):
    from finelip_kit.ablation import GridParameters, write_record

    for k, value in ((4, 60.0), (16, 70.0)):
        write_record({"run_name": f"k{k}", "status": "ok", "parameters": {**GridParameters().measured(), "atrm_k": k},
                      "metrics": {"global/group/t2i": value}, "timings": {"total_s": 1.0}}, tmp_path / "results")
    notebook = execute("ablations/explorer.ipynb", tmp_path / "out.ipynb", results_dir="results", export_dir="exports")
    text = outputs_of(notebook)
    assert "2 record(s), 2 ok; failed: []" in text
    assert "application/vnd.jupyter.widget-view+json" in json.dumps(nbformat.writes(notebook))


def test_token_alignment_notebook_draws_figures_and_the_explorer(tmp_path):
    notebook = execute("notebooks/04_token_alignment.ipynb", tmp_path / "out.ipynb", model=None, steps=2, batch_size=8,
                       pointing_samples=4)
    text = outputs_of(notebook)
    assert "155 words, 8 x 8 patches" in text and "'accuracy'" in text and "'chance': 6.25" in text
    for name in ("heatmap.png", "heatmap.pdf", "caption.png", "slots.pdf", "words_x_slots.pdf"):
        assert (tmp_path / "figures/alignment" / name).stat().st_size > 1000
    explorer = notebook.cells[-1].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in explorer and "image/png" in explorer  # static renders show the figure


def test_text_to_image_notebook_runs_the_tiny_pipeline_side_by_side(tmp_path):
    from finelip_kit import FineLIP
    from finelip_kit.pretrained import export_text_encoder
    from finelip_kit.views.generate import tiny_sd_pipeline

    tiny_sd_pipeline(tmp_path / "sd")
    long_model = FineLIP.from_pretrained("tiny-synthetic-clip", **{"text.context_length": 248, "text.stretch": "kps"})
    export_text_encoder(long_model, tmp_path / "long")
    long_model.save_pretrained(str(tmp_path / "scorer"))
    (tmp_path / "prompts.txt").write_text("a red square on a table , " * 16 + "and a green tower far behind .\n")
    notebook = execute("notebooks/05_text_to_image.ipynb", tmp_path / "out.ipynb", base="sd", encoder="long",
                       prompts_file="prompts.txt", steps=2, seeds=[0], score_model="scorer", device="cpu")
    text = outputs_of(notebook)
    assert "dropped at 77 tokens: '" in text and "green tower far behind" in text
    assert "77 tokens" in text and "long" in text  # the score table's columns
    assert (tmp_path / "figures/t2i/comparison.png").stat().st_size > 5000


def test_text_to_image_notebook_with_its_defaults_offline_says_what_is_missing_and_runs_the_tiny_demo(tmp_path):
    notebook = execute("notebooks/05_text_to_image.ipynb", tmp_path / "out.ipynb", steps=2)  # the defaults otherwise
    text = outputs_of(notebook)
    assert "offline demo: the base pipeline 'stable-diffusion-v1-5/stable-diffusion-v1-5' is neither a local folder nor " \
           "in the Hugging Face cache" in text
    assert "the long text encoder 'exports/longclip-L-text' does not exist" in text and "the images are noise" in text
    assert text.count("dropped at 77 tokens: '") == 2  # both example prompts are longer than 77 tokens
    assert (tmp_path / "figures/t2i/comparison.png").stat().st_size > 5000
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="neither a local folder nor in the Hugging Face cache"):
        execute("notebooks/05_text_to_image.ipynb", tmp_path / "strict.ipynb", steps=2, demo=False)


def test_grid_notebook_refuses_a_run_name_that_leaves_the_results_folder(tmp_path):
    import papermill

    outside = tmp_path / "victim"
    (outside / "checkpoints").mkdir(parents=True)
    for name in (str(outside), "../victim"):
        with pytest.raises(papermill.PapermillExecutionError, match="parameter run_name .* is refused"):
            execute("ablations/grid.ipynb", tmp_path / "out.ipynb", run_name=name, results_dir="results", **TINY)
    assert (outside / "checkpoints").is_dir() and not (tmp_path / "victim.json").exists()
    assert not (tmp_path / "results").exists()


def test_retrieval_notebook_refuses_a_torchscript_payload_as_its_model(tmp_path):
    import papermill

    from test_security import torchscript_pt

    marker = tmp_path / "pwned"
    payload = torchscript_pt(tmp_path, marker)
    with pytest.raises(papermill.PapermillExecutionError, match="refused to load TorchScript archive"):
        execute("notebooks/03_retrieval_eval.ipynb", tmp_path / "out.ipynb", model=str(payload), size=16)
    assert not marker.exists()


def test_explorer_notebook_opens_on_the_shipped_multi_seed_calibration(tmp_path):
    notebook = execute("ablations/explorer.ipynb", tmp_path / "out.ipynb", export_dir="exports")  # default results_dir
    text = outputs_of(notebook)
    assert "54 record(s), 54 ok; failed: []" in text  # 18 settings x 3 seeds, wherever the kernel starts
