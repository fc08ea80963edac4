"""The wheel carries what the kit reads at run time besides its code: the shipped record sets, the
notebooks and the grid specs (``finelip_kit/experiments/shipped.py``), copied into ``finelip_kit/_shipped/``.
Everything else is in pyproject.toml."""

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# The lists live in shipped.py (RECORD_SETS, PROJECT_FILES), read here without importing the package.
_spec = importlib.util.spec_from_file_location("_shipped_lists", ROOT / "finelip_kit" / "experiments" / "shipped.py")
_shipped = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shipped)
BUNDLED = (*(f"{folder}/*.json" for folder in _shipped.RECORD_SETS.values()), *_shipped.PROJECT_FILES)


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
