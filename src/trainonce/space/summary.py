"""Readable table of a search space: groups, their sizes, costs and why some are kept whole."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .search_space import SearchSpace


def human(x: float) -> str:
    """A count with a K/M/G suffix: 1234567 -> '1.23M'."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def format_summary(space: SearchSpace, max_rows: int = 40) -> str:
    groups = space.groups
    prunable = [g for g in groups if g.prunable]
    kept = [g for g in groups if not g.prunable]
    lines = [
        f"SearchSpace of {type(space.model).__name__}: {len(groups)} groups, "
        f"{space.num_zigs} ZIGs ({space.num_prunable_zigs} prunable)",
        f"  params {human(space.num_params())}, FLOPs (MACs) {human(space.flops())}; "
        f"prunable share: params {100 * space.prunable_params_fraction():.1f}%, "
        f"FLOPs {100 * space.prunable_flops_fraction():.1f}%",
        "",
        f"  {'#':>4}  {'group':<48} {'ZIGs':>6} {'params':>9} {'FLOPs':>9}  status",
    ]
    rows = sorted(prunable, key=lambda g: -g.flops) + sorted(
        (g for g in kept if g.flops or g.params), key=lambda g: -g.flops)
    for i, g in enumerate(rows[:max_rows]):
        what = "removable structure" if g.kind == "structure" else "prunable"
        status = what if g.prunable else f"kept: {g.reason}"
        name = g.name if len(g.name) <= 48 else "..." + g.name[-45:]
        lines.append(
            f"  {i:>4}  {name:<48} {g.size:>6} {human(g.params):>9} {human(g.flops):>9}  {status}"
        )
    if len(rows) > max_rows:
        lines.append(f"  ... {len(rows) - max_rows} more groups")
    if kept:
        reasons: dict[str, int] = {}
        for g in kept:
            generic = getattr(g.reason, "generic", g.reason) or "?"
            reasons[generic] = reasons.get(generic, 0) + 1
        lines.append("")
        lines.append(f"  {len(prunable)} prunable groups, {len(kept)} kept whole, because:")
        for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:15]:
            lines.append(f"    {n:>4} x {r}")
    for note in space.notes[:20]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
