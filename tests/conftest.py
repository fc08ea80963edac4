import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tokenizer():
    from finelip_kit import get_tokenizer

    return get_tokenizer(context_length=248)
