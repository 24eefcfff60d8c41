"""Zero rules: whether an op's output is exactly zero given which of its inputs are, for erasing
mode's check that zeroing a structure's parameters zeroes its output (checked, never assumed).

A rule gets the op's arguments with every traced value replaced by its `Zero` state and
returns a state. Ops without a rule (sigmoid, exp, softmax...) never give zero.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any


class Zero(enum.Enum):
    YES = "zero"  # exactly zero (every output of a tuple-valued op)
    NO = "unknown"
    FIRST = "first output"  # a tuple-valued op (norm with statistics, pool with indices)


ZeroRule = Callable[[list, dict], Zero]


def _state(flag: bool) -> Zero:
    return Zero.YES if flag else Zero.NO


def _is_zero(x: Any) -> bool:
    """A traced value that is exactly zero, or the literal number 0."""
    if isinstance(x, Zero):
        return x is Zero.YES
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0


def _arg(args: list, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def first(args: list, kwargs: dict) -> Zero:
    """f(0) = 0 in the first argument: activations with f(0) = 0, views, pools, sums."""
    return _state(bool(args) and _is_zero(args[0]))


def first_of_tuple(args: list, kwargs: dict) -> Zero:
    return Zero.FIRST if first(args, kwargs) is Zero.YES else Zero.NO


def both(args: list, kwargs: dict) -> Zero:
    """``a + b``, ``a - b``, max/min: zero when both operands are (a number must be 0)."""
    b = _arg(args, kwargs, 1, "other")
    return _state(_is_zero(args[0]) and _is_zero(b))


def every(args: list, kwargs: dict) -> Zero:
    """cat/stack of a list of tensors: zero when every one is."""
    return _state(bool(args[0]) and all(_is_zero(t) for t in args[0]))


def product(args: list, kwargs: dict) -> Zero:
    """A product of its operands (mul, matmul, einsum): zero when one of them is."""
    operands = [x for a in args for x in (a if isinstance(a, (list, tuple)) else [a])
                if isinstance(x, Zero)]
    return _state(any(x is Zero.YES for x in operands))


def affine(x_at: int, w_at: int, b_at: int, b_name: str = "bias") -> ZeroRule:
    """``x (*) w + b`` (linear, conv, addmm): zero when x or w is, and b is absent or zero."""

    def rule(args: list, kwargs: dict) -> Zero:
        b = _arg(args, kwargs, b_at, b_name)
        x, w = args[x_at], args[w_at] if len(args) > w_at else kwargs.get("weight")
        return _state((b is None or _is_zero(b)) and (_is_zero(x) or _is_zero(w)))

    return rule


def normalised(w_at: int, b_at: int | None, *, tuple_out: bool = False) -> ZeroRule:
    """``normalise(x) * w + b``: zero only when the weight is (never through x: the statistics
    shift it) and the bias is absent or zero."""

    def rule(args: list, kwargs: dict) -> Zero:
        w = _arg(args, kwargs, w_at, "weight")
        b = _arg(args, kwargs, b_at, "bias") if b_at is not None else None
        out = _is_zero(w) and (b is None or _is_zero(b))
        return (Zero.FIRST if tuple_out else Zero.YES) if out else Zero.NO

    return rule


def getitem(args: list, kwargs: dict) -> Zero:
    src, index = args[0], args[1]
    return _state(src is Zero.YES or (src is Zero.FIRST and index == 0))


def at(i: int, name: str) -> ZeroRule:
    """Zero when argument ``i`` is (div's numerator, attention's values, an embedding table)."""
    return lambda args, kwargs: _state(_is_zero(_arg(args, kwargs, i, name)))


def where(args: list, kwargs: dict) -> Zero:
    return _state(_is_zero(_arg(args, kwargs, 1, "self")) and
                  _is_zero(_arg(args, kwargs, 2, "other")))


def constant_pad(args: list, kwargs: dict) -> Zero:
    return _state(_is_zero(args[0]) and _is_zero(_arg(args, kwargs, 2, "value", 0)))


def pad(args: list, kwargs: dict) -> Zero:
    mode = _arg(args, kwargs, 2, "mode", "constant")
    value = _arg(args, kwargs, 3, "value", None)
    return _state(_is_zero(args[0]) and (mode != "constant" or value is None or _is_zero(value)))
