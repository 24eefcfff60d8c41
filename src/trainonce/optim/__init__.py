"""Optimizers that train a model and drive whole zero-invariant groups to exact zero in one run.

`HESSO`, `HESSOCRIC`, `DHSPG`, `H2SPG`, `HSPG`, `ATO` are `torch.optim.Optimizer`s built on a
`SearchSpace`; `OPTIMIZERS` names them (``register_optimizer`` adds one).
"""

from .ato import ATO
from .base import ZigOptimizer
from .budgets import BUDGETS, Budget, CostBudget, Flops, GroupSparsity, Latency, Params
from .dhspg import DHSPG
from .h2spg import H2SPG
from .hesso import HESSO
from .hesso_cric import HESSOCRIC
from .hspg import HSPG
from .registry import OPTIMIZERS, optimizer_class, register_optimizer
from .saliency import CRITERIA, ZigStats

__all__ = [
    "ATO",
    "BUDGETS",
    "Budget",
    "CostBudget",
    "Flops",
    "GroupSparsity",
    "Latency",
    "Params",
    "CRITERIA",
    "DHSPG",
    "H2SPG",
    "HESSO",
    "HESSOCRIC",
    "HSPG",
    "OPTIMIZERS",
    "ZigOptimizer",
    "ZigStats",
    "optimizer_class",
    "register_optimizer",
]
