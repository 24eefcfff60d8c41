"""Latency budgets: `measure_latency` times a model's own layers at the widths a run can reach
and returns a `LatencyTable` that predicts the slim model's latency from the kept ZIGs."""

from .measure import measure_latency
from .table import LatencyTable

__all__ = ["LatencyTable", "measure_latency"]
