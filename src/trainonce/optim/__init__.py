"""Optimizers that train a model and drive whole zero-invariant groups to exact zero in one run.

`HESSO`, `HESSOCRIC`, `DHSPG`, `HSPG` are `torch.optim.Optimizer`s built on a `SearchSpace`.
"""

from .dhspg import DHSPG
from .hesso import HESSO
from .hesso_cric import HESSOCRIC
from .hspg import HSPG
from .saliency import CRITERIA, ZigStats
from .targets import Target

__all__ = ["CRITERIA", "DHSPG", "HESSO", "HESSOCRIC", "HSPG", "Target", "ZigStats"]
