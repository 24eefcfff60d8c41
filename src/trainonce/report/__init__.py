"""The run report: dense vs slim table, per-layer table, plots and run facts in one HTML file.

Everything takes plain numbers (``Comparison``, ``LayerRow``, histories), so it is tested
without training.
"""

from __future__ import annotations

from .latency import Timing, compare_latency
from .layer_rows import LayerRow, layer_rows, module_of
from .page import Report, render, write_report
from .plots import plot_channels, plot_curves, plot_sparsity
from .tables import Comparison, comparison_rows, markdown

__all__ = [
    "Comparison",
    "LayerRow",
    "Report",
    "Timing",
    "compare_latency",
    "comparison_rows",
    "layer_rows",
    "markdown",
    "module_of",
    "plot_channels",
    "plot_curves",
    "plot_sparsity",
    "render",
    "write_report",
]
