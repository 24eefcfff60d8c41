"""The op registry: every fact trainonce knows about an op (channel rule, size rewrite, module
sizes, zero rule, erasing joint, shape-only) in one `OpRule` entry, asked by every stage.

The built-in entries are `graph/table.py`, registered when `trainonce.graph` is imported;
`register_rule` lets a user teach trainonce a custom op.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .zeros import ZeroRule

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


def literal_zero(x: Any) -> bool:
    """Whether a traced call's argument is the number 0 (not a tensor, not False)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0


@dataclass(frozen=True)
class Joint:
    """An erasing joint: a call whose output is the sum (``kind="sum"``, ``add(a, b)``) or the
    concatenation (``kind="concat"``, ``cat([a, b, ...])``) of its inputs, so an input that is a
    removed structure can be dropped from it. ``overloads``: the overloads of the op that are the
    joint; ``inplace``: the call writes into its first input; ``subtracts``: the call is
    ``a - b``, a joint only as ``a - 0`` (the identity of ``a``; dropping ``a`` from ``a - b``
    would leave ``-b``, not ``b``)."""

    kind: str
    overloads: tuple[str, ...] = ("default",)
    inplace: bool = False
    subtracts: bool = False

    def inputs(self, args: tuple | list) -> list:
        """The joined values among a call's positional arguments. A literal 0 in a sum is the
        identity, not an input: Python's ``sum(op(x) for op in ops)`` starts with ``0 + op0(x)``,
        so that call is ``op0(x)`` alone. An empty list: this call joins nothing (``a - b``)."""
        if self.kind == "concat":
            return list(args[0])
        if self.subtracts:
            return [args[0]] if len(args) > 1 and literal_zero(args[1]) else []
        return [a for a in args[:2] if not literal_zero(a)]


@dataclass(frozen=True)
class OpRule:
    """One op's entry: channel rule, size rewrite (None: the op has no size arguments), the
    module types whose forward emits it, its zero rule (`trainonce.graph.zeros`; None: its
    output is never taken to be exactly zero), the erasing joint it is (if any), and
    ``shape_only``: it only moves or re-views one value (the dependency graph draws it as its
    input)."""

    channels: ChannelRule
    resize: Resize | None = None
    modules: tuple[ModuleSizes, ...] = ()
    zero: ZeroRule | None = None
    joint: Joint | None = None
    shape_only: bool = False


class RuleError(Exception):
    """Raised by a channel rule for a call form it does not support: the op's channels are then
    kept whole with a warning. Any other exception inside a rule is a bug in the rule."""


_RULES: dict[Any, OpRule] = {}
_MODULES: dict[type, ModuleSizes] = {}
_IGNORED: dict[Any, bool] = {}  # op -> it asserts traced metadata (see `ignore_ops`)

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
    zero: ZeroRule | None = None,
    replace: bool = False,
) -> None:
    """Teach trainonce how ``ops`` (an op, a list of ops, or space-separated ATen names) map
    channels. ``channels(rec, args, kwargs, out)`` couples or pins atoms through the helpers of
    `trainonce.graph.compute` / `trainonce.graph.shapes` (e.g. ``compute.broadcast`` for an
    element-wise op); ``resize`` rewrites size arguments in the slim traced program; ``modules``
    keeps the sizes of module types that emit the op true. ``zero(args, kwargs) -> Zero`` says
    whether the op's output is exactly zero, given its arguments with every traced value
    replaced by its `trainonce.graph.zeros.Zero` state (helpers there: ``zeros.first`` for
    f(0) = 0, ``zeros.product``, ``zeros.affine``...); erasing mode uses it to check that zeroing
    a structure's parameters zeroes its output. Without one the output is never taken to be
    zero, so a structure ending in the op is not removable. ``channels`` may also be a whole
    `OpRule` (the other arguments are then ignored). An op that already has a rule needs
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
    entry = channels if isinstance(channels, OpRule) else OpRule(
        channels, resize, tuple(modules), zero)
    keys = _ops(ops)
    taken = [k for k in keys if k in _RULES and not replace]
    if taken:
        raise ValueError(f"{taken[0]} already has a rule; pass replace=True to override it")
    for k in keys:
        _RULES[k] = entry
    for m in entry.modules:
        if replace or m.type not in _MODULES:
            _MODULES[m.type] = m


def ignore_ops(ops: Any, *, metadata_assert: bool = False) -> None:
    """Ops that carry no tensor data (shape asserts, symbolic sizes): skipped by the walk. With
    ``metadata_assert`` they assert a tensor's traced shape or dtype, which a cut makes stale:
    the slim traced program drops them."""
    for k in _ops(ops):
        _IGNORED[k] = metadata_assert


def lookup(target: Any) -> OpRule | None:
    """The entry for a traced node's target (an overload, a packet or a Python callable)."""
    entry = _RULES.get(target)
    if entry is None and hasattr(target, "overloadpacket"):
        entry = _RULES.get(target.overloadpacket)
    return entry


def is_ignored(target: Any) -> bool:
    """Whether a traced node's target carries no tensor data (see `ignore_ops`)."""
    return getattr(target, "overloadpacket", target) in _IGNORED


def is_metadata_assert(target: Any) -> bool:
    """Whether a traced node's target asserts traced metadata a cut makes stale."""
    return _IGNORED.get(getattr(target, "overloadpacket", target), False)


def joint(target: Any) -> Joint | None:
    """The erasing joint a traced node's target (an overload) is, or None."""
    entry = lookup(target)
    found = entry.joint if entry is not None else None
    packet = getattr(target, "overloadpacket", None)
    if found is None or packet is None:
        return None
    return found if any(getattr(packet, o, None) is target for o in found.overloads) else None


def is_shape_op(target: Any) -> bool:
    """Whether a traced node's target only moves or re-views one value (view, permute, clone,
    dropout...): drawn as its input in the dependency graph."""
    entry = lookup(target)
    return entry is not None and entry.shape_only


def entries() -> dict[Any, OpRule]:
    """A copy of the whole registry (op -> entry), e.g. for tests that walk every entry."""
    return dict(_RULES)


def module_sizes(module: nn.Module) -> ModuleSizes | None:
    """The size updater of the most specific registered type ``module`` is an instance of."""
    return next((_MODULES[c] for c in type(module).__mro__ if c in _MODULES), None)
