"""Shared machinery of the ZIG optimizers: variant step (SGD/Adam/AdamW), schedule, exact-zero
holding in params and optimizer state, metrics, resumable state, DDP-consistent masks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch.optim import Optimizer

from ..space import SearchSpace
from .budgets import BUDGETS, Budget, budget_from_args
from .checks import check_hyperparams, frozen_zigs, grads_finite, user_stacklevel
from .reporting import Reporting
from .saliency import ZigStats
from .schedule import Schedule
from .shards import Shards
from .targets import Pool
from .variant import STATE_KEYS, Scratch, decay, direction
from .zigview import Factors, ZigView, ext

VARIANTS = ("sgd", "adam", "adamw")


class ZigOptimizer(Reporting, Optimizer):
    """Base class: a `torch.optim.Optimizer` over every trainable parameter of ``space.model``.

    The common arguments of every ZIG optimizer (keyword-only after ``lr``):

    - ``lr`` (0.1); ``variant``: "sgd" (``momentum`` 0.9, ``nesterov`` False), "adam" or
      "adamw" (``betas`` (0.9, 0.999), ``eps`` 1e-8); ``weight_decay`` (0.0) is L2 for sgd/adam,
      decoupled for adamw. Hyper-parameters must be finite.
    - exactly one target: ``target_group_sparsity`` (share of prunable ZIGs to zero) or
      ``target_flops`` / ``target_params`` / ``target_latency`` (share of the dense model to
      KEEP; latency as ``latency_table``, a `trainonce.measure_latency` table, predicts it:
      without one, a table is measured on the CPU at batch 1); a target the model cannot reach
      is refused here, naming the reachable bound. The optimizer's `target` is that `Budget`.
    - the schedule: ``total_steps``, or ``start_pruning_step`` and ``pruning_steps``;
      ``pruning_periods`` (see `Schedule.from_args`).
    - ``sync_masks`` (True): under torch.distributed, every rank takes rank 0's selections.

    ZIGs with a member slice in a frozen parameter (``requires_grad=False``) cannot be driven
    to zero: they are not prunable for the optimizer (a warning names them).

    A step whose gradients are not all finite is skipped as a whole (no parameter, state or
    schedule change; ``metrics()["skipped_steps"]`` counts them, the first one warns): the
    schedule counts taken steps. The check reads every gradient once (on resnet50's parameters
    about +0.1-0.2x of a torch SGD step); ``check_finite=False`` drops it where something else
    already guards the step (an AMP ``GradScaler`` skips non-finite steps itself).

    One param group holds every trainable parameter, fixed at construction: `add_param_group`
    is refused (a second torch optimizer trains anything else).

    The subclass protocol (written down here only). ``__init__`` takes the subclass's own
    arguments and passes the common ones on (``def __init__(self, space, lr=0.1, *, mine=...,
    **common)``), calls ``super().__init__`` first and then sets its own state: one phase, no
    second initialiser. Class attributes: ``needs_loss_fn = True`` when it needs a held-out
    loss (the CLI then passes ``loss_fn``); ``budgets`` when it takes only some budget kinds;
    ``max_pruning_periods`` when its pruning phase has at most that many periods. `step` on
    step ``t`` (the count of taken steps; a skipped step runs none of this) calls the hooks
    in this order:

    1. ``_needs_directions(t)``: whether this step's update directions are wanted. If not,
       every parameter takes its variant step at once and only 4. follows.
    2. The variant direction ``d`` of each parameter with a gradient (``x_new = x - lr * d``,
       AdamW's decoupled decay aside), with the zero ZIGs' slices held at 0 in the gradient
       and the state; ``_fast_steps(t)`` allows fewer memory passes (not bitwise torch.optim).
    3. Collecting steps only: ``_before_update(t, dirs)`` sees ``dirs`` (parameter index ->
       ``d``, for the parameters with a ZIG slice; the others took their step already), then
       ``_apply(i, p, d, group)`` takes each one's step (default: decay, ``p -= lr * d``; a
       subclass may fold a penalty into it).
    4. ``_after_update(t)``, after every parameter is updated: scaling, proximal steps,
       fixing ZIGs at zero (`_make_zero`).

    Parameter indices are those of `params` and of `view`. Reporting and state:
    ``redundant_mask()`` (ZIGs zero or being driven there), ``metrics()`` (extend
    ``super().metrics()``), ``_extra_state()`` / ``_load_extra_state(extra)`` (the subclass's
    resumable state, tensors, under ``state_dict()["param_groups"][0]["trainonce"]``).
    `HalfSpaceOptimizer` adds the hooks of its penalty (see there).

    FSDP2 (`torch.distributed.fsdp.fully_shard` after `trainonce.analyze`, the optimizer built
    after it): the parameters are found by name in ``space.model`` as it is then, every hook
    sees each rank's local rows (``_apply``'s ``p``, ``dirs``, ``self._local[i]`` for
    ``params[i]``, `view` narrowed to them), and the per-ZIG sums meet in one all-reduce per
    reduction (`Shards`); the selections are then identical on every rank.
    """

    needs_loss_fn: ClassVar[bool] = False
    # the budget kinds it takes (`budgets.BUDGETS`); others are refused
    budgets: ClassVar[tuple[type[Budget], ...]] = BUDGETS
    max_pruning_periods: ClassVar[int | None] = None  # None: as many as pruning_steps

    def __init__(
        self,
        space: SearchSpace,
        lr: float = 0.1,
        *,
        variant: str = "sgd",
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        target_group_sparsity: float | None = None,
        target_flops: float | None = None,
        target_params: float | None = None,
        target_latency: float | None = None,
        latency_table: Any = None,
        total_steps: int | None = None,
        start_pruning_step: int | None = None,
        pruning_steps: int | None = None,
        pruning_periods: int | None = None,
        sync_masks: bool = True,
        check_finite: bool = True,
    ) -> None:
        if not isinstance(space, SearchSpace):  # the torch.optim habit: model.parameters()
            raise TypeError(
                f"{type(self).__name__} takes the SearchSpace of trainonce.analyze, not "
                f"{type(space).__name__}: space = trainonce.analyze(model, example_inputs); "
                f"{type(self).__name__}(space, lr=..., target_flops=0.5); it optimises every "
                "trainable parameter of space.model")
        check_hyperparams(variant, VARIANTS, lr, momentum, nesterov, weight_decay, betas, eps)
        params = [p for p in space.model.parameters() if p.requires_grad]
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            betas=tuple(betas),
            eps=eps,
        )
        super().__init__(params, defaults)  # calls add_param_group once
        self._groups_fixed = True
        self.space = space
        self.variant = variant
        self.target = budget_from_args(
            space, latency_table=latency_table, owner=type(self).__name__,
            target_group_sparsity=target_group_sparsity, target_flops=target_flops,
            target_params=target_params, target_latency=target_latency)
        if not isinstance(self.target, self.budgets):
            takes = " or ".join(f"target_{b.name}" for b in self.budgets)
            raise ValueError(f"{type(self).__name__} takes {takes}, not {self.target.keyword}")
        self.schedule = Schedule.from_args(
            total_steps, start_pruning_step, pruning_steps, pruning_periods
        )
        self.sync_masks = sync_masks
        self.check_finite = check_finite
        self._params = list(self.param_groups[0]["params"])
        self.view = ZigView(space, self._params)
        # FSDP2: the view, the hooks and every buffer below see each rank's local rows
        self.shards = Shards(self._params, self.view)
        self._local = self.shards.locals(self._params)
        self.pool = Pool.of(space, exclude=frozen_zigs(space, type(self).__name__))
        self.prunable = self.pool.prunable
        self.target.check_reachable(space, self.pool)
        self._step = 0
        self.skipped_steps = 0
        self.zero = torch.zeros(space.num_zigs, dtype=torch.bool)  # fixed exact zeros (CPU)
        self._hold: dict[int, Factors] | None = None
        self._scratch = Scratch()
        self._scratch.reserve(self._local, 3)

    @property
    def params(self) -> tuple[torch.Tensor, ...]:
        """The optimized parameters (every trainable one of ``space.model``), in the order the
        parameter indices of `view` and of the hooks refer to."""
        return tuple(self._params)

    @property
    def steps_taken(self) -> int:
        """Steps taken so far (skipped ones not counted): the position in the schedule."""
        return self._step

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's constructor adds the one group through this; afterwards it is refused."""
        if getattr(self, "_groups_fixed", False):
            raise RuntimeError(
                f"{type(self).__name__}.add_param_group: a ZIG optimizer holds one param group, "
                "every trainable parameter of space.model, fixed when it is built. Change "
                "hyper-parameters in opt.param_groups[0]; train other parameters with a second "
                "torch optimizer; after changing the model, analyse it again and build a new "
                "optimizer."
            )
        super().add_param_group(param_group)

    # ----- the step (hooks: see the class docstring) -----------------------------------------
    def _needs_directions(self, t: int) -> bool:
        return False

    def _fast_steps(self, t: int) -> bool:
        """Steps that need not be bitwise torch.optim: the pruning phase. Plain phases stay
        bitwise equal to torch's (tested), the rest takes fewer memory passes."""
        return self.schedule.start <= t < self.schedule.end

    def _before_update(self, t: int, dirs: dict[int, torch.Tensor]) -> None:
        pass

    def _after_update(self, t: int) -> None:
        pass

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if len(self.param_groups) != 1:
            raise RuntimeError("ZIG optimizers hold one param group (all model parameters)")
        self._local = self.shards.locals(self._params)
        grads = [self.shards.grad(p) for p in self._params]
        if self.check_finite and not self.shards.all_true(grads_finite(grads), self._device()):
            self._skip()
            return loss
        group = self.param_groups[0]
        t = self._step
        collect = self._needs_directions(t)
        fast = self._fast_steps(t)
        dirs: dict[int, torch.Tensor] = {}
        for i, (p, x, g) in enumerate(zip(self._params, self._local, grads)):
            if g is None:
                continue
            apply = not (collect and self.view.entries[i])
            hold = self._hold_mask(i)
            state = self.shards.state(i, self.state[p])
            d = direction(self.variant, x, state, group, self._scratch, apply, hold, fast, g)
            self.shards.keep(i, p, self.state[p], state)
            if d is not None:
                dirs[i] = d
        if collect:
            self._before_update(t, dirs)
            for i, d in dirs.items():
                self._apply(i, self._local[i], d, group)
        self._after_update(t)
        self._step += 1
        return loss

    def _skip(self) -> None:
        """A non-finite gradient: nothing changes (weights, zeros, moments, schedule)."""
        self.skipped_steps += 1
        if self.skipped_steps == 1:
            warnings.warn(
                f"{type(self).__name__}: step {self._step} skipped, a gradient is NaN or "
                "infinite; parameters, optimizer state and schedule are unchanged (later "
                "skips are counted in metrics()['skipped_steps'] without a warning)",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def _apply(self, i: int, p: torch.Tensor, d: torch.Tensor, group: dict) -> None:
        decay(self.variant, p, group)
        p.add_(d, alpha=-group["lr"])

    # ----- exact zeros -----------------------------------------------------------------------
    def _hold_mask(self, i: int) -> Factors | None:
        """0/1 `Factors` that are 0 on the zero ZIGs' slices of ``params[i]`` (only over the dims
        that have some); built once per mask change, None for parameters without zero slices."""
        if self._hold is None:
            zero_ext = ext(self.zero, False)
            keep_ext = ext((~self.zero).double(), 1.0)
            self._hold = {}
            for j in self.view.with_zigs:
                ks = self.view.dims_touching(j, zero_ext)
                if ks:
                    self._hold[j] = self.view.factors(j, self._local[j], keep_ext, ks)
        return self._hold.get(i)

    def _touching(self, mask: torch.Tensor) -> list[int]:
        """Indices of the parameters that have a slice in a ZIG flagged in ``mask`` (CPU)."""
        mask_ext = ext(mask, False)
        return [i for i in self.view.with_zigs if self.view.touches(i, mask_ext)]

    @torch.no_grad()
    def _make_zero(self, new: torch.Tensor) -> None:
        """Fix ZIGs ``new`` (bool, CPU) at exactly zero in params and in optimizer state."""
        new = new.bool().cpu() & ~self.zero
        if not bool(new.any()):
            return
        keep_ext = ext((~new).double(), 1.0)
        for i in self._touching(new):
            p = self._local[i]
            m = self.view.multiplier(i, p, keep_ext) == 0
            p.masked_fill_(m, 0.0)
            state = self.shards.state(i, self.state[self._params[i]])
            for key in STATE_KEYS:
                buf = state.get(key)
                if buf is not None:
                    buf.masked_fill_(m, 0.0)
        self.zero = self.zero | new
        self._hold = None

    def _sync(self, mask: torch.Tensor) -> torch.Tensor:
        """Under torch.distributed, every rank takes rank 0's mask (identical selections)."""
        if not (self.sync_masks and dist.is_available() and dist.is_initialized()):
            return mask
        t = mask.to(torch.uint8)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.broadcast(t, src=0)
        return t.cpu().bool()

    # ----- helpers for subclasses ------------------------------------------------------------
    def _device(self) -> torch.device:
        return (
            self._params[self.view.with_zigs[0]].device
            if self.view.with_zigs
            else torch.device("cpu")
        )

    def zig_stats(self, dirs: dict[int, torch.Tensor]) -> ZigStats:
        """Per-ZIG stats (CPU) of the weights and the search direction ``-d``, over the
        parameters in ``dirs`` (index -> direction ``d``, as `_before_update` sees them)."""
        sq, dsq, dot = self._reductions(dirs, with_dsq=True)
        return ZigStats(
            sq_norm=sq.cpu(), dir_sq_norm=dsq.cpu(), dot=-dot.cpu(), numel=self.view.numel
        )

    def _reductions(
        self, dirs: dict[int, torch.Tensor], with_dsq: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-ZIG ``||x||^2``, ``||d||^2`` (zeros unless ``with_dsq``), ``<x, d>`` (float64
        on the device, ``[num_zigs]``) over the parameters in ``dirs``; under FSDP2 the local
        partial sums of all three meet in one all-reduce."""
        v = self.view
        n = v.num_zigs + 1
        dev = self._device()
        sq, dsq, dot = (torch.zeros(n, dtype=torch.float64, device=dev) for _ in range(3))
        for i, d in dirs.items():
            if not v.entries[i]:
                continue
            x = self._local[i]
            tmp = self._scratch.get(x, 2)
            v.add_sq(sq, i, x, tmp)
            if with_dsq:
                v.add_sq(dsq, i, d, tmp)
            v.add_dot(dot, i, x, d, tmp)
        if with_dsq:
            sq, dsq, dot = self.shards.sum(sq, dsq, dot)
        else:
            sq, dot = self.shards.sum(sq, dot)
        return sq[:-1], dsq[:-1], dot[:-1]

    def _select(self, fraction: float, score: torch.Tensor, already: torch.Tensor) -> torch.Tensor:
        return self._sync(self.target.select(self.space, fraction, score, already, self.pool))

    def redundant_mask(self) -> torch.Tensor:
        """ZIGs currently marked redundant (zero, or being driven to zero)."""
        return self.zero.clone()
