import os

# Tests never touch the network: datasets / transformers fail at once on a hub id.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tokenizer():
    from finelip_kit import get_tokenizer

    return get_tokenizer(context_length=248)
