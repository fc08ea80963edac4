"""Models shipped inside the package, loaded by name: ``FineLIP.from_pretrained("tiny-synthetic-clip")``.

``tiny-synthetic-clip`` is the ``tiny`` architecture pretrained the way CLIP was — InfoNCE at a
77-token context on short, alt-text-like captions of the synthetic scenes — so that its early
text positions are well trained and its later ones are not, as Long-CLIP found for CLIP.
``finelip pretrain-tiny`` rebuilds it deterministically.

Storage: the token-embedding table holds CLIP's 49,408 rows, of which the synthetic captions
use about a hundred; the asset stores only those rows and any other row training changed
(the rest are zero when loaded), so it stays a few MB.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

ASSETS = Path(__file__).parent.parent / "assets"  # finelip_kit/assets/<name>/
TOKEN_ROWS = "text.transformer.embeddings.token_embedding.weight"


def asset_names() -> list[str]:
    return sorted(p.name for p in ASSETS.iterdir() if (p / "config.json").is_file()) if ASSETS.is_dir() else []


def asset_path(name: str) -> Path | None:
    """The folder of the packaged model ``name``, or None (a path is never a packaged name)."""
    return ASSETS / name if name in asset_names() else None


def save_asset(model, directory: str | Path, used_rows: torch.Tensor, metrics: dict[str, Any]) -> Path:
    """Write ``model`` as a compact asset: ``config.json``, ``model.safetensors`` (token embedding
    reduced to ``used_rows``), ``metrics.json``."""
    from safetensors.torch import save_file

    from .._version import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"finelip_kit_version": __version__, "config": model.config.to_dict()}, indent=2))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    table = state.pop(TOKEN_ROWS)
    state["token_embedding.ids"] = used_rows.to(torch.int64)
    state["token_embedding.rows"] = table[used_rows].contiguous()
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt", "token_embedding_rows": str(table.shape[0])})
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return directory


def is_compact(directory: Path) -> bool:
    """Whether ``directory`` holds weights in the compact asset layout (``save_asset``: a reduced
    token table) — the packaged models and the bases ``finelip pretrain-tiny --out`` writes —
    read from the file's own header, wherever the folder lies."""
    from safetensors import SafetensorError, safe_open

    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as handle:
            return "token_embedding_rows" in (handle.metadata() or {}) and "token_embedding.ids" in handle.keys()
    except SafetensorError:  # not a safetensors file at all: the safe reader (read_state_dict) refuses it by name
        return False


def load_asset_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The asset's full state dict (unused token rows zero)."""
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), framework="pt") as handle:
        rows = int(handle.metadata()["token_embedding_rows"])
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    ids, values = state.pop("token_embedding.ids"), state.pop("token_embedding.rows")
    table = torch.zeros(rows, values.shape[1], dtype=values.dtype)
    table[ids] = values
    state[TOKEN_ROWS] = table
    return state


def asset_metrics(name: str) -> dict[str, Any]:
    path = asset_path(name)
    if path is None:
        raise KeyError(f"no packaged model {name!r}; packaged: {asset_names()}")
    return json.loads((path / "metrics.json").read_text())
