"""`LatencyTable`: a model's measured latency as a function of which ZIGs are kept, saved as
JSON. Predicted seconds = dense latency - sum over nodes of (time at full width - time at the cut).

Every timed node has one or two coordinates (the kept share of a class of its ZIGs); its time is
interpolated multilinearly on a grid of measured widths. All nodes are evaluated at once, so a
prediction is a dozen vectorised ops however many nodes the model has.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write
from ..space.search_space import SearchSpace

FORMAT = "trainonce-latency-table"
VERSION = 1


@dataclass
class Term:
    """One timed node: ``axes[i]`` the classes whose mean kept share is coordinate ``i``,
    ``levels[i]`` its grid (increasing, the last is 1.0) and ``values`` the seconds at every
    grid point (nested lists, one level per axis)."""

    node: str
    op: str
    axes: list[list[int]]
    levels: list[list[float]]
    values: list


def fingerprint(space: SearchSpace) -> str:
    """Identifies the model and its ZIG numbering: the groups and the traced node names."""
    graph = space.analysis.traced.program.graph if space.analysis is not None else None
    parts = [space.num_zigs, [(g.name, g.size, g.prunable, g.kind) for g in space.groups],
             [n.name for n in graph.nodes] if graph is not None else []]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def device_name(device: torch.device) -> str:
    """The hardware behind ``device``: the CPU model, or the accelerator's name."""
    if device.type == "cpu":
        if os.path.exists("/proc/cpuinfo"):
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        return platform.processor() or platform.machine()
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return device.type


def normalize_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type != "cpu" and device.index is None:
        device = torch.device(device.type, 0)
    return device


class LatencyTable:
    """Measured latency of one model at one batch size, dtype, device and thread count, as a
    function of the kept ZIGs (made by `trainonce.measure_latency`).

    ``meta``: device, device_name, threads, dtype, batch_size, torch and trainonce versions,
    the model's fingerprint, measurement seconds. ``dense``: the dense forward, in seconds."""

    def __init__(self, meta: dict[str, Any], dense: float, classes: list[dict],
                 terms: list[Term]) -> None:
        self.meta, self.dense, self.classes, self.terms = dict(meta), float(dense), classes, terms
        self.num_zigs = int(meta["num_zigs"])
        self._tensors = _compile(classes, terms, self.num_zigs)
        self._on: dict[torch.device, dict[str, torch.Tensor]] = {}

    # ----- identity -----------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self.meta["device"]

    @property
    def threads(self) -> int:
        return int(self.meta["threads"])

    @property
    def batch_size(self) -> int:
        return int(self.meta["batch_size"])

    @property
    def alpha(self) -> float:
        """The calibration factor on the savings of nodes timed alone (1.0: uncalibrated)."""
        return float(self.meta.get("alpha", 1.0))

    def bind(self, space: SearchSpace) -> LatencyTable:
        """``self`` if it was measured for ``space``'s model and ZIG numbering, else ValueError."""
        if fingerprint(space) != self.meta["fingerprint"] or space.num_zigs != self.num_zigs:
            raise ValueError(
                f"this latency table was measured for another model ({self.meta['model']}, "
                f"{self.num_zigs} ZIGs), not for this {type(space.model).__name__} search "
                f"space ({space.num_zigs} ZIGs): measure it with trainonce.measure_latency")
        return self

    def __repr__(self) -> str:
        m = self.meta
        return (f"LatencyTable({m['model']}: {self.dense * 1e3:.3f} ms dense on {m['device']} "
                f"({m['device_name']}), {m['threads']} threads, batch {m['batch_size']}, "
                f"{m['dtype']}, {len(self.terms)} timed nodes)")

    # ----- predictions ----------------------------------------------------------------------
    def predict(self, space: SearchSpace, zero_mask: torch.Tensor | None = None) -> float:
        """Seconds per forward of ``space``'s model with the ZIGs in ``zero_mask`` (bool
        ``[num_zigs]``) removed; the measured dense latency without a mask."""
        self.bind(space)
        return self.cost(None if zero_mask is None else ~zero_mask.bool())

    def cost(self, keep: torch.Tensor | None) -> float:
        """Predicted seconds when only the ZIGs in ``keep`` (bool ``[num_zigs]``) are kept;
        ``None``: the dense model."""
        if keep is None:
            return self.dense
        with torch.no_grad():
            return float(self.soft(keep.detach().to(torch.float64)))

    def soft(self, mask: torch.Tensor) -> torch.Tensor:
        """The prediction as a differentiable function of a float keep mask in [0, 1]
        (``[num_zigs]``), float64 on the mask's device; equal to `cost` on 0/1 masks."""
        t = self._tensors_on(mask.device)
        if t["values"].shape[0] == 0:
            return torch.full((), self.dense, dtype=torch.float64, device=mask.device)
        saved = t["full"].sum() - _interpolate(t, mask.to(torch.float64)).sum()
        return self.dense - self.alpha * saved

    def marginal(self) -> torch.Tensor:
        """Seconds each ZIG's removal saves from the dense model, float64 ``[num_zigs]``: each
        node's time saved from full width to its narrowest grid width along one coordinate,
        shared out over the coordinate's positions (to order candidates, not to predict)."""
        t = self._tensors
        out = torch.zeros(self.num_zigs, dtype=torch.float64)
        if t["values"].shape[0] == 0:
            return out
        top = t["values"][:, -1, -1]
        drop = torch.stack([top - t["values"][:, 0, -1], top - t["values"][:, -1, 0]], 1)
        span = 1.0 - t["levels"][:, :, 0]
        slope = torch.where(span > 0, drop.clamp_min(0) / span.clamp_min(1e-12), 0.0)
        per_axis = torch.zeros_like(t["axes"]).index_add_(
            0, t["term_axes"].reshape(-1), slope.reshape(-1))
        per_class = torch.zeros(t["class_total"].numel(), dtype=torch.float64).index_add_(
            0, t["ax_cls"], t["ax_coef"] * per_axis[t["ax_axis"]])
        share = t["ent_w"] / t["class_total"][t["ent_cls"]]
        return out.index_add_(0, t["ent_zig"], self.alpha * per_class[t["ent_cls"]] * share)

    def _tensors_on(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._on:
            self._on[device] = {k: v.to(device) for k, v in self._tensors.items()}
        return self._on[device]

    # ----- files --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "meta": self.meta, "dense": self.dense,
                "classes": self.classes, "terms": [vars(t) for t in self.terms]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON (atomically: a reader never sees half a file)."""
        text = json.dumps(self.to_dict())
        return atomic_write(path, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device | None = None,
             threads: int | None = None) -> LatencyTable:
        """Read a saved table. Refused (ValueError) when it was measured with another torch
        version, or, where given, on another device or with another thread count."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a trainonce latency table")
        if int(data.get("version", 0)) > VERSION:
            raise ValueError(f"{path} was written by a newer trainonce: upgrade trainonce")
        meta = data["meta"]
        again = "measure it again here with trainonce.measure_latency"
        if meta["torch"] != torch.__version__:
            raise ValueError(
                f"{path} was measured with torch {meta['torch']}, this is torch "
                f"{torch.__version__}; kernel speeds change between versions: {again}")
        if device is not None:
            dev = normalize_device(device)
            here = (str(dev), device_name(dev))
            if here != (meta["device"], meta["device_name"]):
                raise ValueError(
                    f"{path} was measured on {meta['device']} ({meta['device_name']}), not on "
                    f"{here[0]} ({here[1]}): {again}")
        if threads is not None and int(threads) != int(meta["threads"]):
            raise ValueError(f"{path} was measured with {meta['threads']} threads, not "
                             f"{threads}: {again}")
        terms = [Term(**t) for t in data["terms"]]
        return cls(meta, data["dense"], data["classes"], terms)


def _compile(classes: list[dict], terms: list[Term], num_zigs: int) -> dict[str, torch.Tensor]:
    """Flat tensors: class entries (ZIG, positions), axes as weighted classes (axis 0 is the
    constant 1.0 of one-coordinate terms), and every term's grid padded to ``[L, L]``."""
    dbl, lng = torch.float64, torch.long
    ent_cls = [i for i, c in enumerate(classes) for _ in c["zigs"]]
    ent = {"ent_cls": torch.tensor(ent_cls, dtype=lng),
           "ent_zig": torch.tensor([z for c in classes for z in c["zigs"]], dtype=lng),
           "ent_w": torch.tensor([w for c in classes for w in c["weights"]], dtype=dbl)}
    if ent["ent_zig"].numel() and int(ent["ent_zig"].max()) >= num_zigs:
        raise ValueError("a latency table entry names a ZIG the model does not have")
    total = torch.zeros(len(classes), dtype=dbl).index_add_(0, ent["ent_cls"], ent["ent_w"])
    width = max([2] + [len(lv) for t in terms for lv in t.levels])
    ax_axis, ax_cls, ax_coef, term_axes, levels, values = [], [], [], [], [], []
    for t in terms:
        ids = []
        for cls_ids in t.axes:
            ids.append(len(term_axes) * 2 + len(ids) + 1)
            ax_axis += [ids[-1]] * len(cls_ids)
            ax_cls += cls_ids
            ax_coef += [1.0 / len(cls_ids)] * len(cls_ids)
        grid = torch.tensor(t.values, dtype=dbl).reshape(*(len(lv) for lv in t.levels))
        lv = [torch.tensor(x, dtype=dbl) for x in t.levels]
        if len(ids) == 1:
            ids, grid, lv = ids + [0], grid[:, None], lv + [torch.ones(1, dtype=dbl)]
        term_axes.append(ids)
        levels.append(torch.stack([_pad(x, width) for x in lv]))
        values.append(_pad(_pad(grid, width).T, width).T)
    return {**ent, "class_total": total, "axes": torch.ones(2 * len(terms) + 1, dtype=dbl),
            "ax_axis": torch.tensor(ax_axis, dtype=lng), "ax_cls": torch.tensor(ax_cls, dtype=lng),
            "ax_coef": torch.tensor(ax_coef, dtype=dbl),
            "term_axes": torch.tensor(term_axes, dtype=lng).reshape(-1, 2),
            "levels": torch.stack(levels) if levels else torch.zeros(0, 2, width, dtype=dbl),
            "values": torch.stack(values) if values else torch.zeros(0, width, width, dtype=dbl),
            "full": torch.stack([v[-1, -1] for v in values]) if values else torch.zeros(0)}


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    """``x`` padded along dim 0 to ``width`` by repeating its last row (flat beyond the end)."""
    return torch.cat([x, x[-1:].expand(width - x.shape[0], *x.shape[1:])])


def _interpolate(t: dict[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
    """Every term's seconds at the kept shares of ``keep`` (float ``[num_zigs]``): bilinear on
    its grid, clamped to the grid (a class narrower than one ZIG is not reachable)."""
    kept = torch.zeros_like(t["class_total"]).index_add(
        0, t["ent_cls"], t["ent_w"] * keep[t["ent_zig"]])
    share = kept / t["class_total"]
    axes = t["axes"].index_add(
        0, t["ax_axis"], t["ax_coef"] * share[t["ax_cls"]] - t["ax_coef"])
    lv = t["levels"]
    n, width = lv.shape[0], lv.shape[-1]
    x = torch.minimum(torch.maximum(axes[t["term_axes"]], lv[..., 0]), lv[..., -1])
    i = torch.searchsorted(lv.reshape(-1, width), x.reshape(-1, 1).contiguous(), right=True)
    i = (i.reshape(n, 2) - 1).clamp(0, width - 2)
    lo, hi = lv.gather(2, i[..., None])[..., 0], lv.gather(2, i[..., None] + 1)[..., 0]
    den = hi - lo
    a = (x - lo) / torch.where(den > 0, den, 1.0) * (den > 0)
    flat = t["values"].reshape(n, width * width)

    def at(di: int, dj: int) -> torch.Tensor:
        return flat.gather(1, ((i[:, 0] + di) * width + i[:, 1] + dj)[:, None])[:, 0]

    a0, a1 = a[:, 0], a[:, 1]
    return ((1 - a0) * (1 - a1) * at(0, 0) + a0 * (1 - a1) * at(1, 0)
            + (1 - a0) * a1 * at(0, 1) + a0 * a1 * at(1, 1))
