"""The wheel carries what the kit reads at run time besides its code: the shipped record sets, the
notebooks and the grid specs (``finelip_kit/experiments/shipped.py``), copied into ``finelip_kit/_shipped/``.
Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("docs/calibration/*.json", "docs/capacity/map/*.json", "docs/capacity/levers/*.json",
           "docs/fidelity/official_switches/*.json", "notebooks/*.ipynb", "ablations/grid.ipynb",
           "ablations/explorer.ipynb", "ablations/grids/*.yaml")


class BuildWithShippedFiles(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        target = Path(self.build_lib) / "finelip_kit" / "_shipped"
        for pattern in BUNDLED:
            for path in sorted(ROOT.glob(pattern)):
                destination = target / path.relative_to(ROOT)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)


setup(cmdclass={"build_py": BuildWithShippedFiles})
