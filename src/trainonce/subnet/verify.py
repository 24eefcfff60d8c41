"""Does a slim model compute what the full model computes? The one output-tolerance rule of
trainonce (construction, reload and export checks), and the check `construct_subnet` runs."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..pristine import pristine
from ..trace import TensorOutputs, batch_size, map_inputs

# Relative tolerance (of max |y|) per output dtype. float32: 1e-5 (~80 ulps), the rule trainonce
# has always used; float16/bfloat16: ~10 and ~6 ulps of their own. A failure in any of them is
# re-checked in float64, the arbiter, whose tolerance only absorbs summation-order differences.
_REL_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 5e-2, torch.float16: 1e-2}


def tolerance(dtype: torch.dtype) -> float:
    """Largest accepted ``max|ref - got| / max|ref|`` for outputs of ``dtype``."""
    return _REL_TOL.get(dtype, 1e-5)


def max_rel_diff(ref: torch.Tensor, got: torch.Tensor) -> float:
    """``max|ref - got| / max|ref|`` over the finite entries of ``ref``; ``inf`` when the shapes,
    the NaN positions or the infinities differ (a NaN never passes for a number), or integer
    outputs are not equal."""
    if ref.shape != got.shape:
        return float("inf")
    ref, got = ref.detach().cpu(), got.detach().cpu()
    if not ref.is_floating_point():
        return 0.0 if torch.equal(ref, got) else float("inf")
    got = got.to(ref.dtype)
    finite = torch.isfinite(ref)
    same_nan = torch.equal(torch.isnan(ref), torch.isnan(got))
    same_inf = torch.equal(ref[~finite & ~torch.isnan(ref)], got[~finite & ~torch.isnan(ref)])
    if not (same_nan and same_inf and bool(torch.isfinite(got[finite]).all())):
        return float("inf")
    if not bool(finite.any()):
        return 0.0
    scale = float(ref[finite].abs().max())
    diff = float((ref[finite].double() - got[finite].double()).abs().max())
    return diff / max(scale, 1e-12) if diff else 0.0


def within_tolerance(ref: torch.Tensor, got: torch.Tensor, dtype: torch.dtype | None = None
                     ) -> bool:
    """Whether ``got`` reproduces ``ref`` up to the rounding of ``dtype`` (default: ref's)."""
    return max_rel_diff(ref, got) <= tolerance(dtype or ref.dtype)


def run(model: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensors ``model`` outputs in eval mode, flattened (caches and other objects dropped);
    the model is left as it was (`trainonce.pristine`: modes, cached attributes)."""
    with pristine(model), torch.no_grad():
        model.eval()
        return list(TensorOutputs(model)(*args, **kwargs))


def _random_like(x, gen: torch.Generator, batch: tuple[int, int] | None = None):
    """A fresh value like ``x``: floats ~ N(0, 1); integers (token ids, masks) uniform in the
    example's own range [min, max], so they stay valid ids; bools and non-tensors as given.
    ``batch=(old, new)`` resizes dim 0 of batch-major tensors from ``old`` to ``new``."""
    if not isinstance(x, torch.Tensor) or x.numel() == 0:
        return x
    if batch is not None and x.dim() > 0 and x.shape[0] == batch[0]:
        x = x[torch.arange(batch[1]) % batch[0]]
    if x.dtype == torch.bool:
        return x
    if x.is_floating_point():
        return torch.randn(x.shape, generator=gen).to(x.dtype).to(x.device)
    if x.is_complex():
        return x
    lo, hi = int(x.min()), int(x.max())
    return torch.randint(lo, hi + 1, x.shape, generator=gen).to(x.dtype).to(x.device)


def random_inputs(args: tuple, kwargs: dict, seed: int = 0, batch: int | None = None
                  ) -> tuple[tuple, dict]:
    """Inputs of the same shapes and dtypes as ``(args, kwargs)`` (in the same dicts, lists
    and tuples), drawn with ``seed``; with ``batch``, batch-major inputs (see
    `trace.batch_size`) get that many rows instead."""
    gen = torch.Generator().manual_seed(seed)
    old = batch_size(args, kwargs)
    resize = (old, batch) if batch is not None and old is not None else None
    return map_inputs(lambda x: _random_like(x, gen, resize), (tuple(args), dict(kwargs)))


OTHER_BATCH = "a random input of another batch size"


def _as_float64(x):
    return x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


def _compare(ref: list[torch.Tensor], got: list[torch.Tensor]) -> tuple[int, float] | None:
    """The first output out of tolerance, with its relative difference; None if all agree."""
    for i, (a, b) in enumerate(zip(ref, got)):
        diff = max_rel_diff(a, b)
        if diff > tolerance(a.dtype):
            return i, diff
    return None


def _describe(i: int, ref: torch.Tensor, got: torch.Tensor, diff: float) -> str:
    if ref.shape != got.shape:
        return f"output {i} has shape {tuple(got.shape)} instead of {tuple(ref.shape)}"
    if diff == float("inf"):
        return f"output {i} differs (NaN, infinities or integer values do not match)"
    return f"output {i} differs by {diff:.3g} of max |y| (tolerance {tolerance(ref.dtype):.0e})"


def _float64_agrees(full: nn.Module, slim: nn.Module, args: tuple, kwargs: dict) -> bool:
    """Re-run float64 copies: a correct slim model agrees there even when float32 rounding
    (e.g. outputs far smaller than intermediate values) exceeded the float32 tolerance."""
    try:
        args64, kwargs64 = map_inputs(_as_float64, (tuple(args), dict(kwargs)))
        ref = run(copy.deepcopy(full).double(), args64, kwargs64)
        got = run(copy.deepcopy(slim).double(), args64, kwargs64)
    except Exception:  # noqa: BLE001 - a model that cannot run in float64 keeps its verdict
        return False
    return len(ref) == len(got) and _compare(ref, got) is None


class Reference:
    """The full model's outputs on the example input and on a random input of the same shapes
    and dtypes (see `random_inputs`), computed once for every slim candidate compared to it."""

    def __init__(self, full: nn.Module, args: tuple, kwargs: dict, seed: int = 0) -> None:
        self.full = full
        self.inputs = {"the example input": (args, kwargs),
                       "a random input": random_inputs(args, kwargs, seed)}
        batch = batch_size(args, kwargs)
        if batch is not None:
            self.inputs[OTHER_BATCH] = random_inputs(args, kwargs, seed + 1, batch + 1)
        self._outputs: dict[str, list[torch.Tensor] | None] = {}

    def outputs(self, label: str) -> list[torch.Tensor] | None:
        """None: the full model rejects this (random) input, so it cannot be compared there."""
        if label not in self._outputs:
            try:
                self._outputs[label] = run(self.full, *self.inputs[label])
            except Exception:  # noqa: BLE001 - only a random input can be one the model rejects
                if label == "the example input":
                    raise
                self._outputs[label] = None
        return self._outputs[label]

    def mismatch(self, slim: nn.Module, skip: tuple[str, ...] = ()) -> str | None:
        """Why ``slim`` does not compute what the full model computes, or None when it does.

        Checked on every input but those in ``skip``: an example that hides a wrong cut (all
        zeros through a bias-free path) cannot hide it twice, and a slim model must run at
        another batch size too. A float32 difference is re-checked in float64
        before it counts.
        """
        for label, (args, kwargs) in self.inputs.items():
            ref = self.outputs(label) if label not in skip else None
            if ref is None:
                continue
            try:
                got = run(slim, args, kwargs)
            except Exception as exc:  # noqa: BLE001 - reported to the caller, who decides
                first = (str(exc).splitlines() or [""])[0][:200]
                return f"{type(exc).__name__}: {first} on {label}"
            if len(ref) != len(got):
                return f"{len(got)} outputs instead of {len(ref)} on {label}"
            bad = _compare(ref, got)
            if bad is not None and not _float64_agrees(self.full, slim, args, kwargs):
                i, diff = bad
                return f"{_describe(i, ref[i], got[i], diff)} on {label}"
        return None


def mismatch(full: nn.Module, slim: nn.Module, args: tuple, kwargs: dict, seed: int = 0
             ) -> str | None:
    """Why ``slim`` does not compute what ``full`` computes on ``(args, kwargs)`` and on a
    random input like it, or None when it does (see `Reference.mismatch`)."""
    return Reference(full, args, kwargs, seed).mismatch(slim)
