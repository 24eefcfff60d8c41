"""Data functions (``module:function``) used by the CLI tests: good, bad and interrupting."""

import os
import signal

import torch
from torch.utils.data import Dataset, TensorDataset

from trainonce.data import load_data


def small_digits():
    b = load_data("digits")
    x, y = b.train.tensors
    return TensorDataset(x[:256], y[:256]), b.test


def wrong_shapes():
    return TensorDataset(torch.randn(20, 8, 8), torch.zeros(20, dtype=torch.long)), None


def mixed_shapes():
    good = TensorDataset(torch.randn(20, 1, 8, 8), torch.zeros(20, dtype=torch.long))
    bad = TensorDataset(torch.randn(20, 1, 9, 9), torch.zeros(20, dtype=torch.long))
    return good, bad


def not_a_pair():
    return torch.randn(3)


class _Interrupting(Dataset):
    """Sends SIGINT to this process once, when the DataLoader fetches batch number ``at``
    (``__getitems__`` is only used by the DataLoader, not by the data checks)."""

    def __init__(self, base, at):
        self.base, self.at, self.batches = base, at, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i]

    def __getitems__(self, idx):
        self.batches += 1
        if self.batches == self.at and not os.environ.get("TRAINONCE_TEST_INTERRUPTED"):
            os.environ["TRAINONCE_TEST_INTERRUPTED"] = "1"
            os.kill(os.getpid(), signal.SIGINT)
        return [self.base[i] for i in idx]


def interrupting_digits():
    train, test = small_digits()
    return _Interrupting(train, at=int(os.environ.get("TRAINONCE_TEST_AT", "2"))), test


CALLS = []  # names of the data functions below, each time one is called


def recorded_digits():
    CALLS.append("recorded_digits")
    return small_digits()
