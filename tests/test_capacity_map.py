"""The capacity map's report (benchmarks/capacity_map.py): the recipe's score mode chosen on
validation, Δ and σ on test, the 2σ mark — on records with known numbers."""

import importlib.util
from pathlib import Path

import pytest

from finelip_kit.ablation import load_records, write_record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("capacity_map", ROOT / "benchmarks" / "capacity_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(folder, width, grid, loss, seed, test, val, binding):
    """``test`` / ``val`` / ``binding``: within-group t2i per mode (global, fine, fused)."""
    metrics = {}
    for prefix, values in (("", test), ("binding/", binding)):
        metrics.update({f"{prefix}{m}/group/t2i": v for m, v in zip(("global", "fine", "fused"), values)})
        metrics.update({f"{prefix}{m}/t2i/R@1": v / 2 for m, v in zip(("global", "fine", "fused"), values)})
    write_record({"record_version": 2, "run_name": f"d{width}-g{grid}-{loss}-s{seed}", "status": "ok",
                  "preset": "synthetic-tiny", "parameters": {}, "timings": {"total_s": 100.0 + seed},
                  "settings": {"model.embed_dim": width, "data.grid_size": grid, "model.loss": loss, "train.seed": seed},
                  "metrics": metrics, "val_metrics": {f"{m}/group/t2i": v for m, v in zip(("global", "fine", "fused"), val)}},
                 folder)


def test_the_report_chooses_on_validation_and_marks_what_exceeds_two_sigma(report, tmp_path):
    for seed, jitter in enumerate((-1.0, 0.0, 1.0)):
        # d = 4: the fine score wins on validation; on test it is 10 points above global-only (σ = 1)
        record(tmp_path, 4, 4, "global+fine", seed, (50 + jitter, 70 + jitter, 60), (50, 71, 60), (40, 45 + jitter, 42))
        record(tmp_path, 4, 4, "global", seed, (60 + jitter, 30, 55), (61, 30, 55), (44 + 2 * jitter, 30, 40))
        # d = 64: fused wins on validation; 1 point below global-only: not marked
        record(tmp_path, 64, 4, "global+fine", seed, (66, 64, 67 + jitter), (66, 64, 68), (50, 50, 50))
        record(tmp_path, 64, 4, "global", seed, (68 + jitter, 30, 60), (68, 30, 60), (50, 30, 50))
    record(tmp_path, 64, 8, "global", 0, (60, 30, 55), (60, 30, 55), (50, 30, 50))  # one arm only: no cell
    summary = report.cells(load_records(tmp_path))
    assert [(c["width"], c["grid"], c["mode"], c["seeds"]) for c in summary] == [(4, 4, "fine", (3, 3)), (64, 4, "fused", (3, 3))]
    small, wide = summary
    assert small["delta"] == pytest.approx(10.0) and small["sigma"] == pytest.approx(1.0)
    assert small["binding/delta"] == pytest.approx(1.0) and small["binding/sigma"] == pytest.approx(2.0)
    assert wide["delta"] == pytest.approx(-1.0) and wide["sigma"] == pytest.approx(1.0)
    assert small["seconds"] == pytest.approx(101.0)
    table = report.markdown(summary)
    assert "| 4 | 7–10 objects, 4×4 | fine | 71.0 ± 0.0 · 61.0 ± 0.0 | 70.0 ± 1.0 · 60.0 ± 1.0 | +10.0 (2.0) ** |" in table
    assert "| +1.0 (4.0) |" in table  # binding: within 2σ, not marked
    assert "| 64 | 7–10 objects, 4×4 | fused |" in table and "-1.0 (2.0) |" in table
    assert "| 4 | 7–10 objects, 4×4 | recipe | 50.0 ± 1.0 · 70.0 ± 1.0 · 60.0 ± 0.0 |" in report.modes_table(summary)
    report.heatmaps(summary, tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 10_000


def test_the_shipped_map_reproduces_the_docs(report):
    frame = load_records("capacity-map")
    assert len(frame) == 24 and (frame["status"] == "ok").all()
    summary = {(c["width"], c["grid"]): c for c in report.cells(frame)}
    assert sorted(summary) == [(4, 4), (4, 8), (64, 4), (64, 8)]
    expected = {(4, 4): (-2.4, 0.1), (4, 8): (-7.9, 0.1), (64, 4): (-1.7, 0.3), (64, 8): (-1.2, -0.5)}
    for key, (plain, binding) in expected.items():
        assert round(summary[key]["delta"], 1) == plain and round(summary[key]["binding/delta"], 1) == binding, key
        assert summary[key]["mode"] == "fused" and summary[key]["seeds"] == (3, 3)
    # the d = 64 default cell is the calibration's protocol: the same numbers as docs/calibration
    assert round(summary[(64, 4)][("recipe", "fused/group/t2i")][0], 1) == 66.7
    assert round(summary[(64, 4)][("global-only", "global/group/t2i")][0], 1) == 68.3
    text = (ROOT / "docs" / "capacity_map.md").read_text()
    assert "| 4 | 14–20 objects, 8×8 | fused | 40.0 ± 0.5 · 44.9 ± 0.3 | 37.6 ± 1.4 · 45.5 ± 0.3 | -7.9 (2.8) ** |" in text
