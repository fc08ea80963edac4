"""environment.yml installs the same packages as pyproject.toml."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {r.replace(" ", "") for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        wanted |= {r.replace(" ", "") for r in requirements if not r.startswith("finelip-kit")}
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    listed = {r.replace(" ", "") for r in pip if not r.startswith("-e")}
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
