"""Tracing runs the user's forward, which may cache tensors on the model (ultralytics' Detect
head keeps `anchors`/`strides`); `pristine` hands the model back exactly as it came in.

Restored per module: plain attributes (added ones removed, reassigned ones put back), which
parameters, buffers and submodules it holds, buffer values changed in place, the ``training``
flag (one per module: a model with frozen BatchNorms stays mixed) and ``requires_grad``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class _ModuleState:
    attrs: dict
    params: dict[str, nn.Parameter]
    buffers: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]  # buffer contents, against in-place writes
    children: dict[str, nn.Module]
    training: bool

    @classmethod
    def of(cls, m: nn.Module) -> _ModuleState:
        buffers = dict(m.named_buffers(recurse=False))
        return cls(dict(vars(m)), dict(m.named_parameters(recurse=False)), buffers,
                   {n: b.detach().clone() for n, b in buffers.items() if not b.is_meta},
                   dict(m.named_children()), m.training)

    def restore(self, m: nn.Module) -> None:
        for now, saved in (
            (dict(m.named_parameters(recurse=False)), self.params),
            (dict(m.named_buffers(recurse=False)), self.buffers),
            (dict(m.named_children()), self.children),
        ):
            for name in now.keys() - saved.keys():
                delattr(m, name)
            for name, value in saved.items():
                if now.get(name) is not value:
                    setattr(m, name, value)
        current = vars(m)
        for name in current.keys() - self.attrs.keys():
            del current[name]
        for name, value in self.attrs.items():
            if current.get(name) is not value:
                current[name] = value
        with torch.no_grad():
            for name, value in self.values.items():
                buffer = self.buffers[name]
                if not torch.equal(buffer, value):
                    buffer.copy_(value)
        m.training = self.training


@contextmanager
def pristine(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block on ``model`` and restore everything the block changed on it (see the
    module docstring), also when the block raises."""
    modules = list(model.modules())
    states = [_ModuleState.of(m) for m in modules]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield model
    finally:
        for m, state in zip(modules, states):
            state.restore(m)
        for p, flag in grads:
            p.requires_grad_(flag)
