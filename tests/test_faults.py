"""Faults (slow, real processes): SIGKILL three times during training and resume bitwise, Ctrl-C
in a grid, two grid runners on one folder. (A kill during a save is in test_train.py.)"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from finelip_kit.pretrained import read_state_dict

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def train(out: Path, extra=()) -> subprocess.Popen:
    command = [sys.executable, "-m", "finelip_kit.cli", "train", "--out", str(out), "--eval-size", "8", "--model", "tiny",
               "--set", "steps=8", "batch_size=8", "save_every=2", "keep_last=10", "progress=False", "log_every=1",
               "warmup_steps=2", "eval_every=None", "model.vision.image_size=32", "model.atrm_k=4", "data.image_size=32",
               *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_after(process: subprocess.Popen, checkpoint: Path) -> None:
    deadline = time.time() + 300
    while not checkpoint.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_three_sigkills_then_resume_end_bitwise_equal_with_equal_rng_and_a_clean_log(tmp_path):
    reference = train(tmp_path / "reference")
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    victim = tmp_path / "victim"
    kill_after(train(victim), victim / "checkpoints" / "step_0000002")
    for step in (4, 6):  # killed again after each resume
        kill_after(train(victim, ["resume=latest"]), victim / "checkpoints" / f"step_{step:07d}")
    final = train(victim, ["resume=latest"])
    output = final.communicate(timeout=300)[0]
    assert final.returncode == 0 and "resumed from" in output, output

    a_dir, b_dir = (tmp_path / r / "checkpoints" / "step_0000008" for r in ("reference", "victim"))
    a, b = read_state_dict(a_dir / "model.safetensors"), read_state_dict(b_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state_a, state_b = (torch.load(d / "trainer_state.pt", weights_only=True) for d in (a_dir, b_dir))
    assert torch.equal(state_a["rng_torch"], state_b["rng_torch"])
    assert torch.equal(state_a["rng_numpy"][1], state_b["rng_numpy"][1])
    assert torch.equal(state_a["rng_python"][1], state_b["rng_python"][1])
    logged = [json.loads(line)["step"] for line in (victim / "metrics.jsonl").read_text().splitlines()]
    reference_logged = [json.loads(line)["step"] for line in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]
    assert logged == reference_logged  # no step repeated by the resumes
    assert not list((victim / "checkpoints").glob(".tmp_step_*"))


def grid_folder(tmp_path: Path, points: int) -> Path:
    (tmp_path / "grids").mkdir()
    (tmp_path / "grid.ipynb").write_bytes((ROOT / "ablations/grid.ipynb").read_bytes())
    spec = tmp_path / "grids" / "t.yaml"
    spec.write_text("fixed: {steps: 2, batch_size: 8, eval_size: 16, reference: false, keep_model: false}\n"
                    f"product:\n  seed: {list(range(points))}\n")
    return spec


def grid(spec: Path, *extra) -> subprocess.Popen:
    """``finelip grid spec`` as a terminal starts it: with Ctrl-C (SIGINT) at its default action. A process
    inherits an ignored SIGINT (a background job of a non-interactive shell, as CI may start the tests,
    ignores it) and Python then keeps ignoring it, so without the reset a Ctrl-C test would depend on how
    the suite was launched (a fresh clone's CI failed on exactly that)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.Popen([sys.executable, "-m", "finelip_kit.cli", "grid", str(spec), *extra], cwd=spec.parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_stops_a_grid_records_what_happened_and_the_rerun_resumes(tmp_path):
    spec = grid_folder(tmp_path, 3)
    runs = tmp_path / "runs" / "t"
    runner = grid(spec)
    deadline = time.time() + 300
    while not (runs / "default.ipynb").exists():  # the first point (seed 0) has started
        assert runner.poll() is None, runner.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    runner.send_signal(signal.SIGINT)  # to the runner only: its running point goes on to the end
    output = runner.communicate(timeout=600)[0]
    assert runner.returncode == 130, output
    assert "not started 2 (interrupted; rerun to resume)" in output
    assert json.loads((runs / "default.json").read_text())["status"] == "ok"
    assert not (runs / "seed=1.json").exists() and not (runs / "seed=2.json").exists()
    rerun = grid(spec)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0 and "ran 2, skipped 1 (already recorded), failed 0" in output, output


def test_two_grid_runners_on_one_folder_share_the_points_without_clobbering(tmp_path):
    spec = grid_folder(tmp_path, 4)
    runs = tmp_path / "runs" / "t"
    first, second = grid(spec), grid(spec)
    outputs = [first.communicate(timeout=900)[0], second.communicate(timeout=900)[0]]
    assert first.returncode == 0 and second.returncode == 0, outputs
    records = {p.stem: json.loads(p.read_text()) for p in runs.glob("*.json")}
    assert sorted(records) == ["default", "seed=1", "seed=2", "seed=3"]
    assert all(r["status"] == "ok" for r in records.values())
    ran = sum(int(out.split("ran ")[1].split(",")[0]) for out in outputs)
    assert ran == 4  # every point executed exactly once across the two runners
    assert not list(runs.glob(".*.tmp"))


def logged_steps(folder: Path) -> list[int]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip().endswith("}")]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGUSR1"])
def test_a_preemption_signal_saves_the_finished_step_and_the_resume_is_bitwise(tmp_path, signal_name):
    # steps=12 with save_every=100: no periodic checkpoint, so whatever is saved, the signal saved
    settings = ["steps=12", "save_every=100"]
    reference = train(tmp_path / "reference", settings)
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    victim = train(tmp_path / "victim", settings)
    deadline = time.time() + 300
    while len(logged_steps(tmp_path / "victim")) < 3:
        assert victim.poll() is None, victim.stdout.read()
        assert time.time() < deadline
        time.sleep(0.02)
    victim.send_signal(getattr(signal, signal_name))
    output = victim.communicate(timeout=300)[0]
    assert victim.returncode == 75, output  # PREEMPTED_EXIT, documented
    (saved,) = sorted((tmp_path / "victim" / "checkpoints").glob("step_*"))
    stopped = int(saved.name.split("_")[1])
    assert 3 <= stopped < 12 and logged_steps(tmp_path / "victim")[-1] == stopped
    assert (f"stopped by {signal_name} after step {stopped}; checkpoint {saved}; resume: run the same command with "
            f"--set train.resume=latest (exit status 75)") in output
    assert not (tmp_path / "victim.json").exists()  # no record of an unfinished run
    resumed = train(tmp_path / "victim", [*settings, "resume=latest"])
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert f"resumed from {saved} at step {stopped}" in output
    a = read_state_dict(tmp_path / "reference" / "checkpoints" / "step_0000012" / "model.safetensors")
    b = read_state_dict(tmp_path / "victim" / "checkpoints" / "step_0000012" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert logged_steps(tmp_path / "victim") == logged_steps(tmp_path / "reference")


def test_a_checkpoint_that_hits_the_file_size_limit_is_a_named_error_and_leaves_nothing_half_written(tmp_path):
    import resource

    limit = 4 << 20  # smaller than the model's weights file: its first checkpoint cannot be written
    command = [sys.executable, "-m", "finelip_kit.cli", "train", "--out", str(tmp_path / "run"), "--eval-size", "8",
               "--model", "tiny", "--set", "steps=4", "batch_size=8", "save_every=2", "progress=False",
               "model.vision.image_size=32", "model.atrm_k=4", "data.image_size=32"]
    process = subprocess.run(command, capture_output=True, text=True, timeout=300,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert process.returncode == 2, process.stdout[-2000:] + process.stderr[-2000:]
    assert "Traceback" not in process.stderr
    assert "could not write the checkpoint of step 2 under" in process.stderr
    assert "no earlier checkpoint: free disk space or raise the file-size limit (ulimit -f)" in process.stderr
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir()]  # the temporary folder is gone
