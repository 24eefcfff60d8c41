"""The search space: a model's zero-invariant groups (ZIGs) and what each one costs.

Produced by `trainonce.analyze`; consumed by the optimizers (which ZIGs to drive to zero) and by
`construct_subnet` (which slices to remove). Every ZIG has a global id in ``range(num_zigs)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..sharding import all_reduce_sum, local, row_range, shard_group
from .analysis import Analysis
from .costs import CostModel
from .slots import per_position, slot_index


@dataclass(frozen=True)
class Member:
    """Slices of one parameter that belong to a group: ``index[z]`` are the positions along
    ``dim`` that ZIG ``z`` of the group owns (every ZIG owns the same number of positions)."""

    param: str
    dim: int
    index: torch.Tensor  # LongTensor [group.size, k]


@dataclass
class Group:
    """A set of ZIGs that share one structure: every ZIG owns the same slices of the same
    parameters. ZIG ``i`` of the group has the global id ``offset + i``.

    ``kind``: "channel" (channels, heads, neurons: pruning) or "structure" (one whole removal
    unit of erasing mode: a branch, a candidate op, a sublayer; size 1, its members are all of
    the unit's parameters, plus the consumer slices of a concat branch). A structure's slices
    may also lie in channel ZIGs (mode "both"): a position then belongs to one ZIG of each kind.
    """

    name: str
    size: int
    members: list[Member]
    offset: int = 0
    prunable: bool = True
    reason: str | None = None
    flops: float = 0.0  # MACs that scale with this group's channels
    params: int = 0  # parameters that scale with this group's channels
    kind: str = "channel"

    @property
    def zig_ids(self) -> torch.Tensor:
        return torch.arange(self.offset, self.offset + self.size)


@dataclass
class ParamSlices:
    """For one parameter: per dim, the global id of the prunable ZIG owning every position
    (-1: in no prunable ZIG): ``dims`` for channel ZIGs, ``outer`` for structure ZIGs (the
    nesting of erasing mode: a position is in at most one of each)."""

    name: str
    dims: dict[int, torch.Tensor] = field(default_factory=dict)
    outer: dict[int, torch.Tensor] = field(default_factory=dict)

    def layers(self) -> list[tuple[int, torch.Tensor]]:
        """Every (dim, ZIG id per position) map of the parameter, channels then structures."""
        return [*self.dims.items(), *self.outer.items()]


class SearchSpace:
    """Zero-invariant groups of a model, with vectorised accessors for optimizers.

    ``groups`` is the readable view; ``param_slices`` is the flat view the optimizers use:
    for every parameter dim, one LongTensor mapping positions to global ZIG ids, so per-ZIG norms
    are a ``index_add_`` per member instead of a loop over ZIGs.

    ``buffer_slices``: the same map for buffers (e.g. BatchNorm statistics) that lose positions
    (``buffer_outer``: their structure ZIGs in erasing mode).
    ``analysis``: the trace behind the groups, set by `trainonce.analyze`; `construct_subnet`
    needs it. A space built by hand has none (and, without ``costs``, parameter costs only).
    ``align``: every selection keeps a multiple of ``align`` ZIGs (or all) in each channel group
    of single channels (heads and grouped-conv groups stay as they are); a group with fewer
    channels is kept whole (not prunable). See `group_align`.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: list[Group],
        costs: CostModel | None = None,
        notes: list[str] | None = None,
        *,
        buffer_slices: dict[str, dict[int, torch.Tensor]] | None = None,
        buffer_outer: dict[str, dict[int, torch.Tensor]] | None = None,
        analysis: Analysis | None = None,
        mode: str = "prune",
        align: int = 1,
    ) -> None:
        check_align(align)
        self.model = model
        self.mode = mode  # what `trainonce.analyze` looked for: "prune", "erase" or "both"
        self.align = align
        self.groups = groups
        for g in groups:
            if align > 1 and g.prunable and _single_channels(g) and g.size < align:
                g.prunable = False
                g.reason = f"fewer than align={align} channels: kept whole"
        offset = 0
        for g in groups:
            g.offset = offset
            offset += g.size
        self.num_zigs = offset
        self.notes = list(notes or [])
        self.buffer_slices: dict[str, dict[int, torch.Tensor]] = dict(buffer_slices or {})
        # the structure ZIG of buffer positions a concat branch carries (erasing mode)
        self.buffer_outer: dict[str, dict[int, torch.Tensor]] = dict(buffer_outer or {})
        self.analysis: Analysis | None = analysis
        self._slices = self._build_slices()
        self.costs = costs if costs is not None else CostModel.from_params(model, self._slices)
        self._param_count = {n: p.numel() for n, p in self._named_params().items()}
        self._zig_cost_cache: dict[str, torch.Tensor] = {}
        self._fill_group_costs()

    # ----- flat views -------------------------------------------------------------------
    def _named_params(self) -> dict[str, nn.Parameter]:
        return dict(self.model.named_parameters(remove_duplicate=True))

    def _build_slices(self) -> dict[str, ParamSlices]:
        params = self._named_params()
        slices: dict[str, ParamSlices] = {}
        for g in self.groups:
            if not g.prunable:
                continue  # kept whole: always kept, so optimizers and costs can ignore it
            for m in g.members:
                size = params[m.param].shape[m.dim]
                ps = slices.setdefault(m.param, ParamSlices(m.param))
                layer = ps.outer if g.kind == "structure" else ps.dims
                vec = layer.get(m.dim)
                if vec is None:
                    vec = torch.full((size,), -1, dtype=torch.long)
                    layer[m.dim] = vec
                zig = g.zig_ids.unsqueeze(1).expand_as(m.index)
                vec[m.index.reshape(-1)] = zig.reshape(-1)
        return slices

    def group_align(self) -> torch.Tensor:
        """Long ``[num_groups]``: the multiple every selection keeps in each group (``align``
        for prunable channel groups of single channels, 1 for the others)."""
        return torch.tensor([self.align if g.prunable and _single_channels(g) else 1
                             for g in self.groups], dtype=torch.long)

    @property
    def param_slices(self) -> dict[str, ParamSlices]:
        return self._slices

    @property
    def prunable_mask(self) -> torch.Tensor:
        mask = torch.zeros(self.num_zigs, dtype=torch.bool)
        for g in self.groups:
            if g.prunable:
                mask[g.offset : g.offset + g.size] = True
        return mask

    @property
    def num_prunable_zigs(self) -> int:
        return int(self.prunable_mask.sum())

    # ----- costs ------------------------------------------------------------------------
    def flops(self, keep: torch.Tensor | None = None) -> float:
        """MACs of the model if only the ZIGs in ``keep`` (bool [num_zigs]) were kept."""
        return self.costs.flops(keep)

    def num_params(self, keep: torch.Tensor | None = None) -> int:
        """Parameter count of the model if only the ZIGs in ``keep`` were kept."""
        return int(self.costs.params(keep))

    def zig_flops(self) -> torch.Tensor:
        """FLOPs each ZIG removes on its own from the dense model (float [num_zigs])."""
        if "flops" not in self._zig_cost_cache:
            self._zig_cost_cache["flops"] = self.costs.marginal("flops", self.num_zigs)
        return self._zig_cost_cache["flops"]

    def zig_params(self) -> torch.Tensor:
        """Parameters each ZIG removes on its own from the dense model (float [num_zigs])."""
        if "params" not in self._zig_cost_cache:
            self._zig_cost_cache["params"] = self.costs.marginal("params", self.num_zigs)
        return self._zig_cost_cache["params"]

    def _fill_group_costs(self) -> None:
        if self.num_zigs == 0:
            return
        zf, zp = self.zig_flops(), self.zig_params()
        for g in self.groups:
            g.flops = float(zf[g.offset : g.offset + g.size].sum())
            g.params = int(zp[g.offset : g.offset + g.size].sum())

    def prunable_flops_fraction(self) -> float:
        """Share of the dense FLOPs spent in ops that touch at least one prunable group."""
        return self.costs.prunable_fraction("flops", self.prunable_mask)

    def prunable_params_fraction(self) -> float:
        return self.costs.prunable_fraction("params", self.prunable_mask)

    # ----- state of the weights ---------------------------------------------------------
    @torch.no_grad()
    def zig_sq_norms(self) -> torch.Tensor:
        """Squared L2 norm of every ZIG over all of its member slices (float [num_zigs]).
        Parameters sharded by FSDP2 add their local rows, summed over ranks in one all-reduce
        (then a collective: every rank calls it)."""
        params = self._named_params()
        device = next(iter(params.values())).device if params else torch.device("cpu")
        out = torch.zeros(self.num_zigs + 1, dtype=torch.float64, device=device)
        for name, ps in self._slices.items():
            p, rows = local(params[name].detach()), row_range(params[name])
            for dim, vec in ps.layers():
                if rows is not None and dim == 0:
                    vec = vec[rows[0]:rows[1]]
                other = [d for d in range(p.dim()) if d != dim]
                per_pos = p.double().pow(2).sum(dim=other) if other else p.double().pow(2)
                out.index_add_(0, slot_index(vec.to(device), self.num_zigs), per_pos)
        (out,) = all_reduce_sum([out], shard_group(list(params.values())))
        return out[:-1]

    @torch.no_grad()
    def zero_mask(self) -> torch.Tensor:
        """Bool [num_zigs]: which ZIGs are exactly zero in every member slice right now."""
        if self.num_zigs == 0:
            return torch.zeros(0, dtype=torch.bool)
        return (self.zig_sq_norms() == 0).cpu() & self.prunable_mask

    @torch.no_grad()
    def set_zero(self, zero: torch.Tensor) -> None:
        """Write exact zeros into every member slice of the ZIGs flagged in ``zero``."""
        params = self._named_params()
        zero = zero.bool().cpu()
        for name, ps in self._slices.items():
            p, rows = local(params[name]), row_range(params[name])  # FSDP2: this rank's rows
            for dim, vec in ps.layers():
                if rows is not None and dim == 0:
                    vec = vec[rows[0]:rows[1]]
                pos = torch.nonzero(per_position(zero, vec, False)).flatten().to(p.device)
                if pos.numel():
                    p.index_fill_(dim, pos, 0.0)

    # ----- erasing mode ---------------------------------------------------------------------
    @property
    def structure_mask(self) -> torch.Tensor:
        """Bool ``[num_zigs]``: the ZIGs that are whole structures (erasing mode)."""
        mask = torch.zeros(self.num_zigs, dtype=torch.bool)
        for g in self.groups:
            if g.kind == "structure":
                mask[g.offset : g.offset + g.size] = True
        return mask

    def valid(self, zero: torch.Tensor) -> bool:
        """False when removing the structures flagged in ``zero`` (bool ``[num_zigs]``) would
        leave a model output without a path from the inputs (channel ZIGs never do: every
        group keeps one)."""
        h = self.analysis.hierarchy if self.analysis is not None else None
        return True if h is None else h.valid(zero)

    def invalid_reason(self, zero: torch.Tensor) -> str | None:
        """None if ``zero`` is valid, else which removed structures cut which output."""
        h = self.analysis.hierarchy if self.analysis is not None else None
        return None if h is None else h.why_invalid(zero)

    @torch.no_grad()
    def zero_random_groups(self, sparsity: float, seed: int = 0) -> torch.Tensor:
        """Zero a random ``sparsity`` share of each prunable channel group's ZIGs in place (for
        tests and demos; every group keeps at least one ZIG, aligned groups the multiple of
        ``align`` nearest to their share) and of the removable structures
        (drawn in random order, each only if the set stays `valid`). Returns the zeroed ZIGs."""
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        gen = torch.Generator().manual_seed(seed)
        zero = torch.zeros(self.num_zigs, dtype=torch.bool)
        structures = []
        align = self.group_align()
        for i, g in enumerate(self.groups):
            if g.prunable and g.kind == "structure":
                structures.append(g.offset)
                continue
            if not g.prunable or g.size < 2:
                continue
            k = min(int(round(sparsity * g.size)), g.size - 1)
            m = int(align[i])
            if m > 1:  # keep the multiple of m (at least m), or all, nearest to the share
                kept, lo = g.size - k, max(m, (g.size - k) // m * m)
                k = g.size - min((lo, lo + m, g.size), key=lambda c: (abs(c - kept), c)
                                 if c <= g.size else (g.size, c))
            pick = torch.randperm(g.size, generator=gen)[:k]
            zero[g.offset + pick] = True
        want = int(round(sparsity * len(structures)))
        for i in torch.randperm(len(structures), generator=gen).tolist():
            if want == 0:
                break
            zero[structures[i]] = True
            if self.valid(zero):
                want -= 1
            else:
                zero[structures[i]] = False
        self.set_zero(zero)
        return zero

    # ----- display ----------------------------------------------------------------------
    def summary(self, max_rows: int = 40) -> str:
        from .summary import format_summary

        return format_summary(self, max_rows=max_rows)

    def __repr__(self) -> str:
        return self.summary()

    def __str__(self) -> str:
        return self.summary()


def check_align(align: object) -> None:
    if isinstance(align, bool) or not isinstance(align, int) or align < 1:
        raise ValueError(f"align must be a whole number >= 1 (1: no alignment), got {align!r}")


def _single_channels(g: Group) -> bool:
    """A channel group whose every ZIG is one position of each member (not a head, not a
    group of a grouped convolution)."""
    return g.kind == "channel" and all(m.index.shape[-1] == 1 for m in g.members)
