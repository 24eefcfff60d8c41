"""Search space: zero-invariant groups found from a traced graph, and their costs."""

from .costs import CostModel, CostTerm
from .search_space import Group, Member, ParamSlices, SearchSpace

__all__ = ["CostModel", "CostTerm", "Group", "Member", "ParamSlices", "SearchSpace"]
