"""The op registry: everything trainonce knows about one op lives in one `OpRule` entry.

An entry carries the op's channel rule (how positions map through it), its size rewrite for the
slim traced program, and the size updaters of the `nn.Module` types that emit it. The built-in
entries are in `graph/table.py`; `register_rule` lets a user teach trainonce a custom op.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# rule(rec, args, kwargs, out) -> Labels | list[Labels]; tensor arguments are given as their
# `Labels`, ``out`` is the traced output shape (a list of shapes for multi-output ops)
ChannelRule = Callable[[Any, list, dict, Any], Any]
# resize(node, sizes): rewrite the size arguments of a traced node for the slim program, in place
Resize = Callable[[torch.fx.Node, Any], None]


@dataclass(frozen=True)
class ModuleSizes:
    """Keeps the Python-side sizes of a module type true after its weights were cut:
    ``snapshot(m)`` records what ``update(m, old)`` needs from before the cut."""

    type: type
    update: Callable[[nn.Module, dict], None]
    snapshot: Callable[[nn.Module], dict] | None = None


@dataclass(frozen=True)
class OpRule:
    """One op's entry: channel rule, size rewrite (None: the op has no size arguments), the
    module types whose forward emits it, and its zero rule (`trainonce.graph.zeros`; None: its
    output is never taken to be exactly zero)."""

    channels: ChannelRule
    resize: Resize | None = None
    modules: tuple[ModuleSizes, ...] = ()
    zero: Any = None


class RuleError(Exception):
    """Raised by a channel rule for a call form it does not support: the op's channels are then
    kept whole with a warning. Any other exception inside a rule is a bug in the rule."""


_RULES: dict[Any, OpRule] = {}
_MODULES: dict[type, ModuleSizes] = {}
_IGNORED: set[Any] = set()

STRICT_ENV = "TRAINONCE_STRICT_RULES"


def strict() -> bool:
    """With ``TRAINONCE_STRICT_RULES=1`` (set by the test suite) a rule that fails with anything
    but `RuleError` raises instead of pinning its channels: a rule bug is a test failure."""
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def resolve(op: Any) -> Any:
    """The registry key of ``op``: an ATen/custom op packet, an overload (its packet), a name
    in ``torch.ops.aten`` (``"conv2d"``), or a plain Python callable such as `operator.getitem`.
    A name that is no op raises `LookupError` (a typo must not be dropped silently)."""
    if isinstance(op, str):
        packet = getattr(torch.ops.aten, op, None)
        if packet is None:
            raise LookupError(f"torch.ops.aten has no op named {op!r}")
        return packet
    if hasattr(op, "overloadpacket"):  # an overload such as aten.conv2d.default
        return op.overloadpacket
    if callable(op):
        return op
    raise TypeError(f"cannot register a rule for {op!r}: give an op (torch.ops...) or its name")


def _ops(ops: Any) -> list[Any]:
    if isinstance(ops, str):
        return [resolve(n) for n in ops.split()]
    if isinstance(ops, (list, tuple, set, frozenset)):  # an op packet iterates its overloads
        return [resolve(o) for o in ops]
    return [resolve(ops)]


def register_rule(
    ops: Any,
    channels: ChannelRule | OpRule,
    *,
    resize: Resize | None = None,
    modules: Iterable[ModuleSizes] = (),
    replace: bool = False,
) -> None:
    """Teach trainonce how ``ops`` (an op, a list of ops, or space-separated ATen names) map
    channels. ``channels(rec, args, kwargs, out)`` couples or pins atoms through the helpers of
    `trainonce.graph.compute` / `trainonce.graph.shapes` (e.g. ``compute.broadcast`` for an
    element-wise op); ``resize`` rewrites size arguments in the slim traced program; ``modules``
    keeps the sizes of module types that emit the op true. An op that already has a rule needs
    ``replace=True``.

    Example: a custom op ``mylib::scale(x[N, C, H, W], w[C])`` that scales each channel. The
    einsum-style engine couples the dims that share a letter::

        from trainonce.graph.engine import Operand, couple
        from trainonce.graph.labels import Labels

        def scale_rule(rec, args, kwargs, out):
            x, w = args
            return Labels(tuple(out), couple(rec, [Operand(x, "nchw"), Operand(w, "c")], "nchw"))

        trainonce.register_rule(torch.ops.mylib.scale, scale_rule)
    """
    entry = channels if isinstance(channels, OpRule) else OpRule(channels, resize, tuple(modules))
    keys = _ops(ops)
    taken = [k for k in keys if k in _RULES and not replace]
    if taken:
        raise ValueError(f"{taken[0]} already has a rule; pass replace=True to override it")
    for k in keys:
        _RULES[k] = entry
    for m in entry.modules:
        if replace or m.type not in _MODULES:
            _MODULES[m.type] = m


def ignore_ops(ops: Any) -> None:
    """Ops that carry no tensor data (shape asserts, symbolic sizes): skipped by the walk."""
    _IGNORED.update(_ops(ops))


def lookup(target: Any) -> OpRule | None:
    """The entry for a traced node's target (an overload, a packet or a Python callable)."""
    entry = _RULES.get(target)
    if entry is None and hasattr(target, "overloadpacket"):
        entry = _RULES.get(target.overloadpacket)
    return entry


def is_ignored(target: Any) -> bool:
    return getattr(target, "overloadpacket", target) in _IGNORED


def entries() -> dict[Any, OpRule]:
    """A copy of the whole registry (op -> entry), e.g. for tests that walk every entry."""
    return dict(_RULES)


def module_sizes(module: nn.Module) -> ModuleSizes | None:
    """The size updater of the most specific registered type ``module`` is an instance of."""
    return next((_MODULES[c] for c in type(module).__mro__ if c in _MODULES), None)
