"""environment.yml installs the same packages as pyproject.toml; the wheel works outside the checkout."""

import json
import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        wanted |= {_name(r) for r in requirements if not r.startswith("finelip-kit")}
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    listed = {_name(r) for r in pip if not r.startswith("-e")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    assert "-e .[all]" in pip
    assert set(project["optional-dependencies"]["all"][0].split("[")[1].rstrip("]").split(",")) == (
        set(project["optional-dependencies"]) - {"all"}
    )


def test_makefile_pins_the_torch_pair_users_can_install():
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.14.1 torchvision==0.29.1" in makefile
    assert {_name(r) for r in ["torch>=2.4", "torchvision"]} <= {
        _name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }


def test_the_lock_pins_every_dependency_and_environment_yml_is_generated_from_it():
    import subprocess
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import lock

    pins = lock.read_pins()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in lock.direct_requirements():
        assert lock.name(requirement) in pins, f"{requirement} is not in requirements/constraints.txt: run make lock"
    every = [*project["dependencies"], *(r for v in project["optional-dependencies"].values() for r in v
                                         if not r.startswith("finelip-kit"))]
    assert len(lock.direct_requirements()) == len(set(every))  # each once (pandas: notebooks and trackers)
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")  # the pair the Makefile installs
    assert "finelip-kit" not in pins  # the kit itself is installed editable, never pinned
    check = subprocess.run([sys.executable, str(ROOT / "tools" / "lock.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("-c $(LOCK)") == 2 and "tools/lock.py --freeze" in makefile


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_finds_its_records_model_and_notebooks(tmp_path):
    """Build the wheel, install it (no dependencies) into a fresh venv whose only other packages are this
    environment's site-packages (as a path, so the checkout's editable install is not among them), and use
    it from an unrelated folder: the shipped record sets, the packaged model and the notebooks."""
    import site
    import subprocess
    import sys
    import venv

    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("finelip_kit-*.whl")
    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies come from this environment, added as a plain path: its .pth files (among them the
    # checkout's editable finder) are not run, so finelip_kit can only come from the wheel
    Path(purelib, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                                str(wheel)], capture_output=True, text=True, timeout=600)
    if installed.returncode != 0:  # pip older than --python: install with the target path instead
        installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", purelib,
                                    str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = """
import finelip_kit, json, pathlib
from finelip_kit.ablation import load_records
from finelip_kit import load_model
from finelip_kit.shipped import checkout
print(json.dumps({
    "package": finelip_kit.__file__, "checkout": str(checkout()),
    "calibration": len(load_records("calibration")), "capacity-map": len(load_records("capacity-map")),
    "capacity-levers": len(load_records("capacity-levers")), "official-switches": len(load_records("official-switches")),
    "debias": len(load_records("debias")),
    "model": load_model("tiny-synthetic-clip").context_length,
}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    done = subprocess.run([str(python), "-c", script], cwd=elsewhere, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(purelib) and found["checkout"] == "None"  # the wheel's, not the checkout's
    assert (found["calibration"], found["capacity-map"], found["capacity-levers"], found["official-switches"],
            found["debias"]) == (54, 24, 12, 6, 42)
    assert found["model"] == 77
    copied = subprocess.run([str(python), "-m", "finelip_kit.cli", "notebooks", "--to", "project"], cwd=elsewhere,
                            capture_output=True, text=True, timeout=300, env=env)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    names = sorted(str(p.relative_to(elsewhere / "project")) for p in (elsewhere / "project").rglob("*") if p.is_file())
    assert names == sorted([".finelip-kit", "ablations/explorer.ipynb", "ablations/grid.ipynb",
                            *(f"ablations/grids/{p.name}" for p in (ROOT / "ablations" / "grids").glob("*.yaml")),
                            *(f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb"))])
    assert (elsewhere / "project" / "notebooks" / "01_quickstart.ipynb").read_bytes() == \
        (ROOT / "notebooks" / "01_quickstart.ipynb").read_bytes()
