"""Issue 20: grids and training on SLURM through submitit, against a real one-node SLURM cluster
(slurmctld + slurmd + munge) that the tests start and stop (``slurm_cluster.py``). Skipped with the
reason when the packages or root are missing, unless ``FINELIP_REQUIRE_SLURM=1`` (CI), where a
missing cluster fails the run. The pure parts and submitit's local executor run everywhere."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from finelip_kit.ablation import load_spec, run_grid
from finelip_kit.ablation.slurm import point_states, status_table, submit_grid
from finelip_kit.cluster import SlurmOptions, finished_state
from finelip_kit.train.distributed import first_host, slurm_environment

ROOT = Path(__file__).resolve().parents[1]
TINY = "{steps: 2, batch_size: 8, eval_size: 16, reference: false, keep_model: false}"


# ----------------------------------------------------------------------------- pure parts
def test_first_host_of_a_node_list():
    assert first_host("gpu[03-05,09],cpu1") == "gpu03"
    assert first_host("node7") == "node7"
    assert first_host("a1,b2") == "a1"
    assert first_host("n[1-4]") == "n1"


def test_srun_variables_become_torch_distributed_ones():
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "16", "SLURM_STEP_NUM_TASKS": "16", "SLURM_LOCALID": "3",
           "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456"}
    assert slurm_environment(env) == {"RANK": "3", "WORLD_SIZE": "16", "LOCAL_RANK": "3", "MASTER_ADDR": "gpu07",
                                      "MASTER_PORT": str(15000 + 123456 % 20000)}
    assert slurm_environment({**env, "RANK": "0"}) == {}  # torchrun's own variables win
    assert slurm_environment({**env, "SLURM_STEP_NUM_TASKS": "1"}) == {}  # a one-task step: no process group
    # the batch script itself (as measured on the test cluster: SLURM_PROCID=0, the job's SLURM_NTASKS,
    # no step variables): one process, which must not wait for 15 others
    batch = {k: v for k, v in env.items() if k != "SLURM_STEP_NUM_TASKS"}
    assert slurm_environment({**batch, "SLURM_PROCID": "0"}) == {}
    assert slurm_environment({**env, "MASTER_PORT": "29500"})["MASTER_PORT"] == "29500"


def test_slurm_options_from_the_spec_block_and_the_command_line():
    options = SlurmOptions.merged({"partition": "gpu", "time_min": 30, "sbatch": {"qos": "low"}},
                                  {"time_min": 90, "partition": None, "sbatch": {"account": "lab"}})
    assert options.partition == "gpu" and options.time_min == 90  # the command line wins
    assert options.sbatch == {"qos": "low", "account": "lab"}
    parameters = options.submitit_parameters("x")
    assert parameters["slurm_partition"] == "gpu" and parameters["timeout_min"] == 90
    assert parameters["slurm_additional_parameters"] == {"qos": "low", "account": "lab"}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['gpus'\]"):
        SlurmOptions.merged({"gpus": 1}, {})
    with pytest.raises(ValueError, match="slurm.time_min must be an integer >= 1, got 0"):
        SlurmOptions(time_min=0)


INJECTIONS = [
    ({"partition": "debug\ntouch /tmp/pwned"}, r"slurm.partition 'debug\\ntouch /tmp/pwned' is refused: it holds \['\\n', ' '\]"),
    ({"sbatch": {"qos": "low\necho pwned"}}, r"slurm.sbatch qos .* is refused"),
    ({"sbatch": {"qos\necho pwned": "low"}}, r"sbatch option name .* is refused"),
    ({"sbatch": {"comment": "a;rm -rf ~"}}, r"is refused: it holds \[' ', ';', '~'\]|is refused"),
    ({"sbatch": {"account": "$(id)"}}, r"is refused: it holds \['\$'\]"),
    ({"sbatch": {"output": "/tmp/x"}}, r"slurm.sbatch 'output' is set by the kit"),
    ({"partition": "gpu#x"}, r"holds \['#'\]"),
]


@pytest.mark.parametrize("block, message", INJECTIONS)
def test_slurm_options_that_would_become_shell_lines_are_refused(block, message):
    with pytest.raises(ValueError, match=message):
        SlurmOptions.merged(block, {})


def test_injections_are_refused_from_the_grid_spec_and_the_command_line_before_submitit_sees_them(tmp_path, capsys):
    from finelip_kit.cli import main

    spec = tmp_path / "grids" / "g.yaml"
    spec.parent.mkdir()
    spec.write_text('points: [{}]\nslurm: {partition: "debug\\ntouch pwned"}\n')
    assert main(["grid", str(spec), "--executor", "slurm", "--dry-run"]) == 2
    assert "slurm.partition" in capsys.readouterr().err
    spec.write_text("points: [{}]\n")
    assert main(["grid", str(spec), "--executor", "slurm", "--dry-run", "--partition", "a\nb"]) == 2
    assert main(["grid", str(spec), "--executor", "slurm", "--dry-run", "--sbatch", "qos=x\ntouch pwned"]) == 2
    assert main(["train", "--out", str(tmp_path / "r"), "--executor", "slurm", "--sbatch", "a b=c"]) == 2
    assert not (tmp_path / "pwned").exists()


def test_every_accepted_option_stays_one_sbatch_line_in_submitits_job_script():
    from submitit.slurm.slurm import _make_sbatch_string

    options = SlurmOptions(partition="gpu-a100", sbatch={"qos": "high", "constraint": "a100|h100", "mail-type": "BEGIN,END",
                                                         "gres": "gpu:2", "exclusive": True, "nice": 10})
    parameters = {k.replace("slurm_", ""): v for k, v in options.submitit_parameters("finelip-x").items()
                  if k not in ("timeout_min", "slurm_array_parallelism", "tasks_per_node", "cpus_per_task", "name",
                               "nodes")}
    script = _make_sbatch_string("python run.py", "/tmp/logs", partition=parameters["partition"],
                                 additional_parameters=parameters["additional_parameters"])
    body = script.split("# command")[0].splitlines()
    assert [line for line in body if line and not line.startswith("#")] == []  # nothing but #SBATCH lines and comments
    assert "#SBATCH --partition=gpu-a100" in body and "#SBATCH --constraint='a100|h100'" in body


def test_a_killed_tasks_reason_is_read_from_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol: the log is all there is
    log = tmp_path / "12_3_0_log.err"
    log.write_text("training...\nslurmstepd: error: *** JOB 15 ON vm CANCELLED AT 2026-12-02T10:00:00 DUE TO TIME LIMIT ***\n")
    state, reason = finished_state("12_3", str(log))
    assert state == "TIMEOUT" and "DUE TO TIME LIMIT" in reason
    log.write_text("slurmstepd: error: *** JOB 15 ON vm CANCELLED AT 2026-12-02T10:00:00 DUE TO PREEMPTION ***\n")
    assert finished_state("12_3", str(log))[0] == "PREEMPTED"
    assert finished_state("12_3", str(tmp_path / "missing.err"))[0] == "UNKNOWN"


class FakeJob:
    """A submitted job as ``wait_for_run`` sees it: done when its result is there."""

    def __init__(self, log: Path, done_after: int | None, results=(None, {"run_name": "r", "status": "ok"})):
        self.job_id, self.paths, self.checks, self.done_after, self._results = "7", type("P", (), {"stderr": log}), 0, done_after, results

    def done(self) -> bool:
        self.checks += 1
        return self.done_after is not None and self.checks > self.done_after

    def results(self):
        return list(self._results)


def test_following_a_run_goes_through_a_requeue_and_fails_clearly_when_the_job_left_without_a_result(tmp_path, monkeypatch):
    from finelip_kit.cluster import wait_for_run

    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol: SLURM's verdict comes from the log
    log = tmp_path / "7_0_log.err"
    # queued, running, requeued (pending again), then its result: rank 0's summary comes back
    states = iter([{"7": "PENDING"}, {"7": "RUNNING"}, {"7": "PENDING"}, {"7": "RUNNING"}])
    job = FakeJob(log, done_after=4)
    assert wait_for_run(job, poll_s=0, queue_every_s=0, gone_s=60, queue=lambda ids: next(states)) == {"run_name": "r", "status": "ok"}
    # killed before the run could start (the CI flake: a requeued job restarted too soon, "credential
    # revoked"), no result and no sacct: an error naming SLURM's verdict and the log, not a wait for ever
    log.write_text("slurmstepd: error: *** JOB 7 ON vm CANCELLED AT 2026-12-04T10:00:00 DUE TO TIME LIMIT ***\n")
    job = FakeJob(log, done_after=None)
    with pytest.raises(RuntimeError, match=r"SLURM job 7 left the queue without the run's result \(TIMEOUT: .*DUE TO "
                                           r"TIME LIMIT.*see its log .*7_0_log.err\. Resubmit it"):
        wait_for_run(job, poll_s=0.01, queue_every_s=0, gone_s=0.05, queue=lambda ids: {})
    assert job.checks >= 2  # it looked again before giving up


def test_following_a_grid_without_squeue_says_where_to_run_it(tmp_path, monkeypatch):
    from finelip_kit.cluster import queue_states

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="squeue is not installed here: follow a SLURM grid from a machine of the cluster"):
        queue_states(["12_0"])


def test_the_status_table_names_each_points_state_job_and_log():
    table = status_table({"seed=0": {"state": "ok", "job_id": "7_0", "log": "/runs/t/slurm/7_0/7_0_0_log.err"},
                          "seed=1": {"state": "failed", "job_id": "7_1", "log": "/l", "slurm_state": "TIMEOUT",
                                     "reason": "TimeLimit"},
                          "seed=2": {"state": "pending", "job_id": None, "log": None}}).splitlines()
    assert table[1].split() == ["seed=0", "ok", "7_0", "/runs/t/slurm/7_0/7_0_0_log.err"]
    assert table[2].split() == ["seed=1", "failed", "7_1", "/l", "(TIMEOUT:", "TimeLimit)"]
    assert table[3].split() == ["seed=2", "pending", "-", "-"]
    assert table[-1] == "1 pending, 1 ok, 1 failed"


def grid_folder(tmp_path: Path, points: str, slurm: str = "{time_min: 5, array_parallelism: 2}") -> Path:
    (tmp_path / "grids").mkdir(parents=True)
    shutil.copy(ROOT / "ablations/grid.ipynb", tmp_path / "grid.ipynb")
    spec = tmp_path / "grids" / "t.yaml"
    spec.write_text(f"fixed: {TINY}\npoints:\n{points}slurm: {slurm}\n")
    return spec


FOUR = "  - {seed: 0}\n  - {seed: 1}\n  - {seed: 2}\n  - {seed: 0, dataset: /nonexistent/pairs.jsonl}\n"


def comparable(record: dict) -> dict:
    """What a point measured (not when, where or how long)."""
    return {k: record[k] for k in ("status", "settings", "metrics", "val_metrics", "test_pairs", "preset")}


@pytest.mark.slow
def test_submitit_local_executor_runs_the_same_point_as_the_local_runner(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    spec_path = grid_folder(tmp_path, "  - {seed: 0}\n")
    spec = load_spec(spec_path, runs_dir=tmp_path / "by_submitit")
    jobs = submit_grid(spec, SlurmOptions(time_min=5, partition="debug", sbatch={"qos": "low"}),
                       executor=submitit.AutoExecutor(folder=tmp_path / "logs" / "%j", cluster="local"),
                       queue=lambda ids: {})  # SLURM's options are the AutoExecutor's to drop off SLURM
    assert list(jobs) == ["default"]
    assert jobs["default"].result() is None  # the point's answer: no error
    assert point_states(spec, queue=lambda ids: {})["default"]["state"] == "ok"
    local = load_spec(spec_path, runs_dir=tmp_path / "here")
    assert run_grid(local, progress=False).ok
    ours = json.loads((spec.runs_dir / "default.json").read_text())
    theirs = json.loads((local.runs_dir / "default.json").read_text())
    assert comparable(ours) == comparable(theirs)


# ----------------------------------------------------------------------------- a real cluster
@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    from slurm_cluster import missing, one_node_cluster

    reason = missing()
    if reason:
        if os.environ.get("FINELIP_REQUIRE_SLURM") == "1":
            pytest.fail(f"FINELIP_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    pytest.importorskip("submitit")
    with one_node_cluster(tmp_path_factory.mktemp("slurm")) as env:
        print(f"SLURM test cluster up in {env['startup_s']} s")
        yield {**os.environ, "SLURM_CONF": env["SLURM_CONF"],
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def finelip(env, *args, cwd=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finelip_kit.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_a_grid_on_slurm_records_what_the_local_runner_records_and_reruns_only_what_is_missing(slurm, tmp_path):
    spec = grid_folder(tmp_path, FOUR)
    runs = tmp_path / "runs" / "t"
    first = finelip(slurm, "grid", str(spec), "--executor", "slurm")
    assert first.returncode == 0 and "submitted 4 point(s) as job array" in first.stdout, first.stdout + first.stderr
    again = finelip(slurm, "grid", str(spec), "--executor", "slurm")  # everything is queued or running
    assert "submitted 0 point(s)" in again.stdout, again.stdout + again.stderr
    status = finelip(slurm, "grid", "status", str(spec)).stdout
    array = first.stdout.split("as job array ")[1].split()[0]
    assert all(f"{array}_{i}" in status for i in range(4)), status
    deadline = time.time() + 600
    while any(word in (status := finelip(slurm, "grid", "status", str(spec)).stdout) for word in ("queued", "running")):
        assert time.time() < deadline, status
        time.sleep(2)
    assert "3 ok, 1 failed" in status, status
    records = {p.stem: json.loads(p.read_text()) for p in runs.glob("*.json") if not p.name.endswith(".slurm.json")}
    failed = records["dataset=_nonexistent_pairs.jsonl"]
    assert failed["status"] == "failed" and "nonexistent" in failed["error"]
    assert Path(failed["slurm"]["log"]).is_file() and failed["slurm_job_id"] == f"{array}_3"
    assert records["seed=1"]["slurm_job_id"] == f"{array}_1" and records["seed=1"]["host"]
    # the same points through the local runner: the same records
    local = load_spec(spec, runs_dir=tmp_path / "local")
    here = run_grid(local, progress=False)
    assert sorted(here.ran) == ["default", "seed=1", "seed=2"] and list(here.failed) == ["dataset=_nonexistent_pairs.jsonl"]
    for name in ("default", "seed=1", "seed=2"):
        assert comparable(records[name]) == comparable(json.loads((local.runs_dir / f"{name}.json").read_text())), name
    from finelip_kit.ablation import ablation_table, load_records  # the explorer's tables do not care where it ran

    there, here_table = (ablation_table(load_records(folder), "global/group/t2i") for folder in (runs, local.runs_dir))
    assert there.equals(here_table)
    from finelip_kit.experiments.explorer import AblationExplorer

    with contextlib.redirect_stdout(io.StringIO()):  # the explorer on the SLURM grid's folder, as a user opens it
        explorer = AblationExplorer(str(runs))
    assert list(explorer.failed_points) == ["dataset=_nonexistent_pairs.jsonl"]
    assert "nonexistent" in explorer.failed_points["dataset=_nonexistent_pairs.jsonl"]
    assert list(explorer.settings_table["n"]) == [3] and explorer.settings_table["seeds"][0] == "0, 1, 2"
    assert explorer.export_dir == runs / "exports"
    assert list(explorer.effects["setting"]) == ["baseline"] and explorer.effects["n"][0] == 3  # one setting, 3 seeds
    # a rerun submits only the point without an ok record
    rerun = finelip(slurm, "grid", str(spec), "--executor", "slurm", "--wait")
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    assert "submitted 1 point(s)" in rerun.stdout and "ran 3 ok, failed 1" in rerun.stdout, rerun.stdout + rerun.stderr
    final = finelip(slurm, "grid", "status", str(spec)).stdout
    assert "3 ok, 1 failed" in final, final


@pytest.mark.slow
def test_a_point_slurm_ends_gets_a_failed_record_with_slurms_state_and_its_log(slurm, tmp_path):
    spec = grid_folder(tmp_path, "  - {steps: 100000}\n")
    assert finelip(slurm, "grid", str(spec), "--executor", "slurm").returncode == 0
    deadline = time.time() + 120
    while "running" not in finelip(slurm, "grid", "status", str(spec)).stdout:
        assert time.time() < deadline, "the point never started"
        time.sleep(1)
    cancelled = finelip(slurm, "grid", "cancel", str(spec))
    assert "cancelled 1 job(s)" in cancelled.stdout, cancelled.stdout + cancelled.stderr
    deadline = time.time() + 120
    while "failed" not in (status := finelip(slurm, "grid", "status", str(spec)).stdout):
        assert time.time() < deadline, status
        time.sleep(1)
    assert "CANCELLED" in status
    record = json.loads((tmp_path / "runs" / "t" / "steps=100000.json").read_text())
    assert record["status"] == "failed" and record["slurm"]["state"] == "CANCELLED"
    assert "SLURM CANCELLED" in record["error"] and record["slurm"]["log"].endswith("_log.err")


@pytest.mark.slow
def test_finelip_train_under_srun_and_through_submitit_equals_one_process(slurm, tmp_path):
    from safetensors.torch import load_file

    settings = ["--preset", "synthetic-tiny", "--eval-size", "0", "--set", "steps=1", "batch_size=8", "batch_scope=global",
                "lr_backbone=1e-2", "lr_new=1e-2", "adam_eps=1.0", "warmup_steps=0", "eval.size=8",
                "eval.reference=false", "progress=false"]
    two = subprocess.run(["srun", "-n", "2", "--cpus-per-task", "1", sys.executable, "-m", "finelip_kit.cli", "train",
                          "--out", str(tmp_path / "srun"), *settings], env=slurm, capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    submitted = finelip(slurm, "train", "--executor", "slurm", "--tasks-per-node", "2", "--time", "10", "--wait",
                        "--out", str(tmp_path / "submitit"), *settings)
    assert submitted.returncode == 0 and "ended: submitit ok" in submitted.stdout, submitted.stdout + submitted.stderr
    one = finelip(os.environ, "train", "--out", str(tmp_path / "one"), *settings)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    reference = load_file(tmp_path / "one" / "model" / "model.safetensors")
    base = load_file(ROOT / "finelip_kit" / "assets" / "tiny-synthetic-clip" / "model.safetensors")
    moved = max((reference[k] - base[k]).abs().max().item() for k in base if k in reference and reference[k].shape == base[k].shape)
    assert moved > 1e-4  # the step did something to compare
    for run in ("srun", "submitit"):
        weights = load_file(tmp_path / run / "model" / "model.safetensors")
        assert max((weights[k] - reference[k]).abs().max().item() for k in reference) <= 1e-6, run
        record = json.loads((tmp_path / f"{run}.json").read_text())
        assert record["slurm_job_id"] and record["status"] == "ok"


def wait_until(condition, what: str, timeout: float = 300, every: float = 0.5):
    deadline = time.time() + timeout
    while not (value := condition()):
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return value


def job_state(env, job: str) -> tuple[str, int]:
    """(state, restart count) of ``job`` from ``scontrol show job``."""
    text = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
    state = text.split("JobState=")[1].split()[0] if "JobState=" in text else ""
    return state, int(text.split("Restarts=")[1].split()[0]) if "Restarts=" in text else 0


PREEMPT_SETTINGS = ["--eval-size", "8", "--model", "tiny", "--set", "steps=30", "batch_size=8", "save_every=100",
                    "progress=False", "log_every=1", "warmup_steps=2", "eval_every=None", "model.vision.image_size=32",
                    "model.atrm_k=4", "data.image_size=32", "eval.size=8", "eval.reference=false"]


@pytest.mark.slow
def test_a_preempted_job_saves_requeues_itself_and_resumes_bitwise_by_sbatch_and_by_submitit(slurm, tmp_path):
    env = {**slurm, "OMP_NUM_THREADS": "1"}
    reference = finelip(env, "train", "--out", str(tmp_path / "reference"), *PREEMPT_SETTINGS)
    assert reference.returncode == 0, reference.stdout[-2000:] + reference.stderr[-2000:]
    expected = read_weights(tmp_path / "reference")

    def preempt(folder: Path, job: str, signal_name: str, batch: bool) -> None:
        wait_until(lambda: len(logged(folder)) >= 3, "three logged steps")
        signal = subprocess.run(["scancel", *(["--batch"] if batch else []), f"--signal={signal_name}", job], env=env,
                                capture_output=True, text=True)
        assert signal.returncode == 0, signal.stderr
        # the job saved, requeued itself (SLURM holds a requeued job about 2 minutes: the test releases it).
        # Not at once: slurmd refuses a credential created in the second its job's old one was revoked
        # ("Killing non-startable batch job: Job credential revoked": the job FAILED, the CI flake)
        wait_until(lambda: job_state(env, job) == ("PENDING", 1), "the job requeued")
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now+5"], env=env, check=True, capture_output=True)

    # 1. a batch script: `exec finelip train ... train.requeue=true`; SIGUSR1 as --signal=B:USR1@90 would send it
    out = tmp_path / "sbatch"
    command = " ".join([sys.executable, "-m", "finelip_kit.cli", "train", "--out", str(out), *PREEMPT_SETTINGS,
                        "train.requeue=true"])
    job = subprocess.run(["sbatch", "--parsable", "--requeue", "--open-mode=append", "--output", str(tmp_path / "sbatch.log"),
                          "--wrap", f"exec {command}"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    preempt(out, job, "USR1", batch=True)
    wait_until(lambda: (tmp_path / "sbatch.json").is_file() and job_state(env, job)[0] == "COMPLETED", "the resumed job")
    log = (tmp_path / "sbatch.log").read_text()
    stopped = int(log.split("stopped by SIGUSR1 after step ")[1].split(";")[0])
    assert f"SLURM job {job} is requeued and resumes from it when it starts again (exit status 75)" in log, log
    assert f"resumed from {out / 'checkpoints' / f'step_{stopped:07d}'} at step {stopped}" in log, log
    assert equal_weights(read_weights(out), expected)

    # 2. through submitit (finelip train --executor slurm): submitit's own pre-emption signal, USR2, to the task
    out = tmp_path / "submitit"
    submitted = subprocess.Popen([sys.executable, "-m", "finelip_kit.cli", "train", "--executor", "slurm", "--wait",
                                  "--time", "20", "--out", str(out), *PREEMPT_SETTINGS], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    wait_until(lambda: (out / "metrics.jsonl").is_file(), "the submitted job to start")
    job = wait_until(lambda: subprocess.run(["squeue", "-h", "-o", "%i", "-n", "finelip-train-submitit"], env=env,
                                            capture_output=True, text=True).stdout.strip(), "the job id")
    preempt(out, job, "USR2", batch=False)
    output = submitted.communicate(timeout=600)[0]
    assert submitted.returncode == 0 and "ended: submitit ok" in output, output
    assert wait_until(lambda: (state := job_state(env, job))[0] == "COMPLETED" and state, "the job to end") == ("COMPLETED", 1)
    assert equal_weights(read_weights(out), expected)
    record = json.loads((tmp_path / "submitit.json").read_text())
    assert record["status"] == "ok" and [h["step"] for h in record["history"]][-1] == 30


def logged(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines if line.strip().endswith("}")]


def read_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model" / "model.safetensors")


def equal_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
