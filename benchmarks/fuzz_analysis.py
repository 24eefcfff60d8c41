"""Offline fuzz run: N seeded random models (tests/fuzz_models.py) through analyze + slim checks.

Prints ok / refused / failed counts, each failure class with its count, one repro seed and a
shrunk spec, and writes benchmarks/results/fuzz.md.
Usage: python benchmarks/fuzz_analysis.py --n 2000 --seed 0 [--only I] [--jsonl F]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "fuzz.md"


def _load(name: str):
    """Import tests/<name>.py by path (the test helpers are not an installed package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def model_rng(seed: int, i: int) -> random.Random:
    return random.Random(seed * 1_000_003 + i)


def run(n: int, seed: int, only: int | None, budget: int, sparsities, seeds,
        log=None) -> dict:
    for dep in ("equivalence", "fuzz_blocks", "fuzz_tokens"):
        _load(dep)
    FM = _load("fuzz_models")
    counts, refused = Counter(), Counter()
    classes: dict[str, list] = defaultdict(list)
    per_kind = defaultdict(Counter)
    t0 = time.perf_counter()
    for i in ([only] if only is not None else range(n)):
        spec = FM.random_spec(model_rng(seed, i))
        out = FM.check_spec(spec, sparsities=sparsities, seeds=seeds)
        counts[out.kind] += 1
        if log is not None:
            log.write(json.dumps({"i": i, "kind": out.kind, "signature": out.signature,
                                  "blocks": [list(b) for b in spec.blocks],
                                  "slim": out.slim_kinds}) + "\n")
        for kind in {b[0] for b in spec.blocks}:
            per_kind[kind][out.kind] += 1
        if out.kind == "refused":
            refused[f"{out.signature}: {out.detail.splitlines()[0][:90]}"] += 1
        elif out.kind == "failed":
            classes[out.signature].append((i, spec, out))
            if len(classes[out.signature]) == 1:
                print(f"[{i}] NEW {out.signature}\n    {out.detail[:300]}", flush=True)
        if (i + 1) % 50 == 0:
            print(f"{i + 1} models, {dict(counts)}, {time.perf_counter() - t0:.0f}s", flush=True)
    seconds = time.perf_counter() - t0
    repros = {}
    for sig, hits in classes.items():
        i, spec, out = min(hits, key=lambda h: (len(h[1].blocks), h[0]))
        small = FM.shrink(spec, lambda o, sig=sig: o.signature == sig, budget=budget)
        repros[sig] = (i, small, out, FM.check_spec(small, sparsities=sparsities, seeds=seeds))
    return {"n": sum(counts.values()), "seed": seed, "counts": counts, "refused": refused,
            "classes": classes, "repros": repros, "per_kind": per_kind, "seconds": seconds}


def report(r: dict) -> str:
    c = r["counts"]
    lines = [
        "# Fuzz run: random architectures through analyze + construct_subnet",
        "",
        f"`python benchmarks/fuzz_analysis.py --n {r['n']} --seed {r['seed']}` "
        f"({r['seconds']:.0f} s on the 2-core development machine).",
        "A model is **ok** when every `zero_random_groups` draw (sparsity 0.3 / 0.7, seeds 0 / 1)"
        " builds a slim model equal to the zeroed full model (max|diff| <= 1e-5 max|y|) on the"
        " example and on a second random input; **refused** when analyze raises TraceError,"
        " NothingPrunableError or its own ValueError; anything else is **failed**.",
        "",
        "| outcome | models | share |",
        "|---|---:|---:|",
    ]
    for kind in ("ok", "refused", "failed"):
        lines.append(f"| {kind} | {c[kind]} | {100 * c[kind] / max(r['n'], 1):.1f}% |")
    lines += ["", "## Failure classes", "",
              "| class (stage: error) | models | repro (`--only I`) | shrunk blocks |",
              "|---|---:|---:|---|"]
    for sig, hits in sorted(r["classes"].items(), key=lambda kv: -len(kv[1])):
        i, small, _, again = r["repros"][sig]
        kinds = ", ".join(b[0] + (f"+{b[4]}" if b[4] else "") for b in small.blocks) or "-"
        lines.append(f"| `{sig.replace('|', '/')}` | {len(hits)} | {i} | {kinds} |")
    lines += ["", "Shrunk specs (`fuzz_models.check_spec(Spec(...))` reproduces each):", ""]
    for sig, (_, small, _, again) in r["repros"].items():
        lines += [f"- `{sig}`", f"  - `{small!r}`", f"  - {again.detail.splitlines()[0][:300]}"]
    lines += ["", "## Refusals", "", "| refusal | models |", "|---|---:|"]
    lines += [f"| {k.replace('|', '/')} | {v} |" for k, v in r["refused"].most_common()]
    lines += ["", "## Outcomes by block kind (models containing the kind)", "",
              "| kind | models | ok | refused | failed |", "|---|---:|---:|---:|---:|"]
    for kind, cnt in sorted(r["per_kind"].items(), key=lambda kv: -kv[1]["failed"]):
        lines.append(f"| {kind} | {sum(cnt.values())} | {cnt['ok']} | {cnt['refused']} | "
                     f"{cnt['failed']} |")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", type=int, default=None, help="rerun model I of this seed only")
    ap.add_argument("--shrink-budget", type=int, default=40, help="checks per failure class")
    ap.add_argument("--jsonl", type=Path, default=None, help="also write one line per model")
    args = ap.parse_args()
    _load("conftest")  # this machine's torchvision quirk, as in the test suite
    with open(args.jsonl, "w") if args.jsonl else contextlib.nullcontext() as log:
        r = run(args.n, args.seed, args.only, args.shrink_budget, (0.3, 0.7), (0, 1), log)
    text = report(r)
    print(text)
    if args.only is None:
        write_atomic(RESULTS, text)


if __name__ == "__main__":
    main()
