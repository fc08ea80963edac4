"""Reading weights files safely: safetensors, torch pickles (weights only), TorchScript archives without running them."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from .torchscript import UnsafeArchiveError, is_torchscript, read_torchscript_state_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODULES_FILE = "finelip_modules.safetensors"  # ATRM etc. beside an exported CLIPModel
MODULES_CONFIG_FILE = "finelip_config.json"
TEXT_POSITIONS = "text.transformer.embeddings.position_embedding.weight"
LONGCLIP_KEEP = 20  # Long-CLIP: rows < 20 from positional_embedding, the rest from positional_embedding_res
_POSITION_KEYS = ("text.transformer.embeddings.position_embedding.frozen", "text.transformer.embeddings.position_embedding.trainable")
_NEW_MODULES = ("image_atrm.", "text_atrm.")


# ----------------------------------------------------------------------------- reading files
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, read without running any code from it.

    ``.safetensors``; a TorchScript archive (OpenAI's releases: its tensors are read by
    ``torchscript.read_torchscript_state_dict``, which never runs the archive's code); or a
    ``torch.save`` file, loaded with ``weights_only=True`` so that a pickle carrying arbitrary
    objects is refused. A ``{"state_dict": ...}`` wrapper is unwrapped. (Loading into a
    model then refuses integer or boolean tensors where the model has floating-point ones.)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                return load_file(str(path))
            except SafetensorError as error:
                raise ValueError(f"{str(path)!r} is not a valid safetensors file ({error}); was another format "
                                 f"renamed to .safetensors?") from None
        if is_torchscript(path):
            return read_torchscript_state_dict(path)
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except UnsafeArchiveError as error:
        raise ValueError(
            f"refused to load TorchScript archive {str(path)!r}: {error}. The kit reads only the tensors of plain "
            f"module archives (as OpenAI's releases are); re-save a trusted model's state_dict() as safetensors"
        ) from error
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refused to load {str(path)!r}: it holds Python objects other than tensors, which could run "
            f"code when unpickled. Load it yourself only if you trust it, and save its state_dict() "
            f"(torch.save(model.state_dict(), ...) or safetensors). Detail: {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"could not read checkpoint {str(path)!r} ({type(error).__name__}: {str(error).splitlines()[0]}); "
            f"the file may be truncated or not a PyTorch / safetensors checkpoint"
        ) from error
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError(f"checkpoint {str(path)!r} holds {type(loaded).__name__}, not a state dict of tensors")
    return {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}




