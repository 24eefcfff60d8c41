"""Analysis time and peak memory of `trainonce.analyze` on real architectures.

Each model is analysed in a fresh subprocess, so peak RSS is its own. Targets on the 2-core
development machine: resnet50 <= 2 s; timm efficientvit_b0 at 64x64 <= 5 s (padded attention
heads, whose refinement used to run without end); a Llama-2-7B-shaped model on `meta` <= 15 s
and <= 2 GB. ``--components`` also times our connected components against scipy's on the
7B-shaped graph (scipy only here, never in the core).
Writes benchmarks/results/analysis.md. Usage: python benchmarks/bench_analysis.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASES = ["resnet50", "vit_b_16", "efficientvit_b0", "llama_2_layers", "llama_7b_meta"]
TARGETS = {"resnet50": (2.0, None), "efficientvit_b0": (5.0, None),
           "llama_7b_meta": (15.0, 2048)}

CHILD = r"""
import json, os, resource, sys, time, torch
os.environ["HF_HUB_OFFLINE"] = "1"
try:
    torch.ops.torchvision.nms
except (AttributeError, RuntimeError):  # this machine's CUDA-only torchvision wheel (see tests)
    _lib = torch.library.Library("torchvision", "DEF")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
import trainonce

case, mode = sys.argv[1], sys.argv[2]
if case in ("resnet50", "vit_b_16"):
    import torchvision
    model = getattr(torchvision.models, case)(weights=None)
    inputs = torch.randn(1, 3, 224, 224)
elif case == "efficientvit_b0":
    import timm
    model = timm.create_model(case, num_classes=10)
    inputs = torch.randn(1, 3, 64, 64)
else:
    import transformers
    big = case == "llama_7b_meta"
    cfg = transformers.LlamaConfig(
        hidden_size=4096 if big else 512, intermediate_size=11008 if big else 1376,
        num_hidden_layers=32 if big else 2, num_attention_heads=32 if big else 8,
        num_key_value_heads=8 if big else 2, vocab_size=32000)
    with torch.device("meta" if big else "cpu"):
        model = transformers.LlamaForCausalLM(cfg)
    ids = torch.zeros(1, 16, dtype=torch.long, device="meta" if big else "cpu")
    inputs = {"input_ids": ids, "use_cache": False}
if len(sys.argv) > 3:  # --components: time connected components on this model's graph
    import statistics
    import numpy, scipy.sparse, scipy.sparse.csgraph
    from trainonce.graph.components import components
    from trainonce.graph.propagate import pin_outputs, propagate
    from trainonce.trace import trace
    traced = trace(model, inputs)
    prop = propagate(traced)
    pin_outputs(traced, prop)
    n, (a, b) = prop.rec.next_atom, prop.rec.edges()

    def ours():
        return components(n, a, b)

    def scipy_roots():  # same answer: the smallest atom of each component
        graph = scipy.sparse.coo_matrix((numpy.ones(a.numel(), dtype=numpy.int8),
                                         (a.numpy(), b.numpy())), shape=(n, n))
        _, label = scipy.sparse.csgraph.connected_components(graph, directed=False)
        label = torch.from_numpy(label).long()
        low = torch.full((n,), n, dtype=torch.long).scatter_reduce_(
            0, label, torch.arange(n), reduce="amin")
        return low[label]

    assert torch.equal(ours(), scipy_roots())
    times = {}
    for name, fn in (("ours", ours), ("scipy", scipy_roots)) * 3:
        t = time.perf_counter()
        fn()
        times.setdefault(name, []).append(time.perf_counter() - t)
    print(json.dumps({"atoms": n, "edges": a.numel(),
                      **{k: statistics.median(v) for k, v in times.items()}}))
    sys.exit(0)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
space = trainonce.analyze(model, inputs, mode=mode)
dt = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": dt, "peak_mb": rss, "before_mb": rss0,
                  "groups": len(space.groups), "zigs": space.num_prunable_zigs,
                  "prunable_flops": space.prunable_flops_fraction()}))
"""


def run(case: str, mode: str, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, case, mode, *extra], capture_output=True,
                         text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"}, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", nargs="*", default=CASES)
    ap.add_argument("--mode", choices=["prune", "erase", "both"], default="prune",
                    help="analysis mode (erase: whole structures; results in analysis-erase.md)")
    ap.add_argument("--components", action="store_true",
                    help="also time connected components, ours vs scipy, on the 7B graph")
    args = ap.parse_args()
    if args.components:
        c = run("llama_7b_meta", "prune", "components")
        print(f"components on {c['atoms']} atoms, {c['edges']} edges: ours {c['ours']:.3f} s, "
              f"scipy {c['scipy']:.3f} s (ours / scipy = {c['ours'] / c['scipy']:.2f})")
    rows = []
    for case in args.cases:
        runs = [run(case, args.mode) for _ in range(args.repeat)]
        sec = statistics.median(r["seconds"] for r in runs)
        mb = max(r["peak_mb"] for r in runs)
        limit_s, limit_mb = TARGETS.get(case, (None, None))
        ok = (limit_s is None or sec <= limit_s) and (limit_mb is None or mb <= limit_mb)
        target = " / ".join(x for x in (f"<= {limit_s:g} s" if limit_s else "",
                                        f"<= {limit_mb} MB" if limit_mb else "") if x)
        rows.append((case, sec, mb, runs[0]["groups"], runs[0]["zigs"],
                     runs[0]["prunable_flops"], target or "-", "ok" if ok else "MISSED"))
        of_goal = f" ({sec / limit_s:.2f} of the time goal)" if limit_s else ""
        print(f"{case:16s} {sec:7.2f} s  peak {mb:7.0f} MB  target {target or '-'}{of_goal}  "
              f"{rows[-1][-1]}", flush=True)
    lines = [
        f"# Analysis time and peak memory (mode {args.mode})", "",
        f"`python benchmarks/bench_analysis.py --mode {args.mode} --repeat {args.repeat}` "
        "(median time, max peak "
        f"RSS of the process; {os.cpu_count()} cores, machine shared, so times are noisy).", "",
        "| model | analyse (s) | peak RSS (MB) | groups | prunable ZIGs | prunable FLOPs | "
        "target | |", "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for case, sec, mb, g, z, pf, target, ok in rows:
        lines.append(f"| {case} | {sec:.2f} | {mb:.0f} | {g} | {z} | {100 * pf:.0f}% | "
                     f"{target} | {ok} |")
    name = "analysis.md" if args.mode == "prune" else f"analysis-{args.mode}.md"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
