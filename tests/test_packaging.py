"""environment.yml installs the same packages as pyproject.toml."""

import re
import tomllib
from pathlib import Path

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
