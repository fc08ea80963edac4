"""A real one-node SLURM cluster for the tests: Debian's slurm-wlm (slurmctld + slurmd) and munge,
configured in a temporary folder (no cgroups, no accounting), started in the background and
stopped at the end, even on failure. Needs root and the packages (`.ci/run` installs them)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PROGRAMS = ("slurmctld", "slurmd", "munged", "sinfo", "sbatch", "squeue", "srun", "scancel")


def missing() -> str | None:
    """Why a cluster cannot be started here (None when it can)."""
    absent = [p for p in PROGRAMS if shutil.which(p) is None and not Path(f"/usr/sbin/{p}").exists()]
    if absent:
        return f"SLURM test cluster needs {absent} (apt-get install slurm-wlm munge; .ci/run does it)"
    if os.geteuid() != 0:
        return "SLURM test cluster needs root (it starts slurmctld, slurmd and munged)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _program(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _start_munge() -> None:
    """munged with a key (reused when one exists); a running munged is kept."""
    if subprocess.run(["bash", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0:
        return
    key = Path("/etc/munge/munge.key")
    if not key.is_file():
        subprocess.run(["mungekey", "-c", "-f", "-k", str(key)], check=True, capture_output=True)
    subprocess.run(["chown", "munge:munge", str(key)], check=False)
    key.chmod(0o400)
    for folder in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", "munge:munge", folder], check=False)
    subprocess.run([_program("munged"), "--force"], check=True, capture_output=True)
    for _ in range(50):
        if subprocess.run(["bash", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("munged did not start")


def write_config(folder: Path) -> Path:
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    with open("/proc/meminfo") as info:
        free_kb = next(int(line.split()[1]) for line in info if line.startswith("MemAvailable"))
    for name in ("state", "spool", "log"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    config = folder / "slurm.conf"
    config.write_text("\n".join([
        "ClusterName=finelip-test",
        f"SlurmctldHost={host}",
        "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "MpiDefault=none", "ReturnToService=2", "SchedulerType=sched/builtin", "SchedulerParameters=sched_interval=2",
        "KillWait=5", "MinJobAge=300",
        f"NodeName={host} CPUs={cpus} RealMemory={int(free_kb / 1024 * 0.9)} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4",
    ]) + "\n")
    return config


@contextlib.contextmanager
def one_node_cluster(folder: Path):
    """Start munge, slurmctld and slurmd; yield the environment clients need (``SLURM_CONF``);
    stop the daemons at the end. Also yields the seconds the start took (``env["startup_s"]``)."""
    started = time.perf_counter()
    _start_munge()
    config = write_config(folder)
    env = {**os.environ, "SLURM_CONF": str(config)}
    daemons = []
    try:
        for daemon in ("slurmctld", "slurmd"):
            daemons.append(subprocess.Popen([_program(daemon), "-D", "-f", str(config)], env=env,
                                            stdout=subprocess.DEVNULL, stderr=open(folder / "log" / f"{daemon}.out", "w")))
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            if state.returncode == 0 and state.stdout.strip() in ("idle", "mix", "alloc"):
                break
            if any(d.poll() is not None for d in daemons):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the test cluster's node did not come up: {state.stdout} {state.stderr}")
        if any(d.poll() is not None for d in daemons):
            logs = {p.name: p.read_text()[-2000:] for p in (folder / "log").iterdir()}
            raise RuntimeError(f"a SLURM daemon exited at start: {logs}")
        yield {"SLURM_CONF": str(config), "startup_s": f"{time.perf_counter() - started:.1f}"}
    finally:
        # jobs first: a job still running when its daemons stop leaves its slurmstepd behind
        subprocess.run(["scancel", "--full", "-u", os.environ.get("USER", "root")], env=env, capture_output=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True)
            if queue.returncode != 0 or not queue.stdout.strip():
                break
            time.sleep(0.5)
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
