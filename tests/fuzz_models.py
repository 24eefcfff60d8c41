"""Random DAG-shaped models from the op families of `fuzz_blocks` / `fuzz_tokens`, and the check
that `analyze` either refuses clearly or every random zeroing gives an exact slim model.

`random_spec` draws from a hypothesis ``draw`` or a seeded ``random.Random``; `build` turns a spec
into ``(model, example_inputs)``; `check` runs one model and returns an `Outcome`.
"""

from __future__ import annotations

import random
import re
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import fuzz_blocks as B
import fuzz_tokens as T
import torch
from equivalence import analyze_untouched, make_zeroing_visible
from torch import nn

import trainonce

IMG = {"conv": B.ConvBnAct, "residual": B.Residual, "branches": B.Branches,
       "chunk": B.ChunkSplit, "depthwise": B.Depthwise, "grouped": B.Grouped,
       "se": B.SqueezeExcite, "shuffle": B.Shuffle, "pixel_shuffle": B.PixelShuffle,
       "upsample": B.Upsample, "pool": B.Pool, "param_mul": B.ParamMul, "convnext": B.ConvNeXt,
       "size1_slice": B.Size1Slice, "index_table": B.IndexTable, "strided": B.Strided,
       "conv_transpose": B.ConvT, "glu": B.Glu, "prelu": B.PReLU, "bool_mask": B.BoolMask,
       "param_slice": B.ParamSlice, "stale_gate": B.StaleGate, "to_seq": B.ToSeq}
SEQ = {"linear": T.SeqLinear, "mlp": T.Mlp, "norm": T.Norm, "pos_embed": T.PosEmbed,
       "seq_glu": T.SeqGlu, "token_mix": T.TokenMix, "seq_param_mul": T.SeqParamMul,
       "seq_size1": T.SeqSize1, "seq_param_slice": T.SeqParamSlice, "seq_conv": T.SeqConv}
BOTH = {"attention": T.Attention, "mha": T.MHA}
KINDS = {"img": sorted(IMG) + sorted(BOTH), "seq": sorted(SEQ) + sorted(BOTH)}
FILLS = ("randn", "zeros", "ones")


class _Rng:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]


class _Draw:
    """Hypothesis draws; every choice shrinks towards the first option / the low end."""

    def __init__(self, draw) -> None:
        from hypothesis import strategies as st

        self.draw, self.st = draw, st

    def int(self, lo: int, hi: int) -> int:
        return self.draw(self.st.integers(lo, hi))

    def pick(self, seq):
        return seq[self.draw(self.st.integers(0, len(seq) - 1))]


def _chooser(source):
    return _Rng(source) if isinstance(source, random.Random) else _Draw(source)


@dataclass(frozen=True)
class Spec:
    """A model: input, stem, blocks ``(kind, c, v, j, skip, back)`` and head. ``skip`` is ""
    / "add" / "cat" with the output ``back`` blocks earlier (0: the stem's)."""

    inp: tuple  # ("img", shape) | ("ids", shape, vocab) | ("feat", shape)
    stem: tuple  # (c, v)
    blocks: tuple
    head: int
    fill: str
    seed: int = 0


def random_spec(source, max_blocks: int = 6) -> Spec:
    ch = _chooser(source)
    mode = ch.pick(["img", "img", "seq"])
    if mode == "img":
        side = ch.int(4, 8)
        inp = ("img", (2, ch.pick([3, 1]), side, ch.pick([side, 4 + (side + 1) % 5])))
    elif ch.int(0, 1):
        inp = ("ids", (2, ch.int(4, 8)), ch.int(5, 20))
    else:
        inp = ("feat", (2, ch.int(4, 8), ch.int(2, 6)))
    stem = (ch.int(4, 16), ch.int(0, 15))
    state = T.Stem(inp, *stem).out
    blocks = []
    for _ in range(ch.int(1, max_blocks)):
        kind = ch.pick(KINDS[state[0]])
        c, v, j = ch.int(4, 16), ch.int(0, 15), ch.int(0, 15)
        skip = ch.pick(["", "", "", "add", "cat"])
        blocks.append((kind, c, v, j, skip, ch.int(0, len(blocks))))
        state = _make(kind, state, c, v, j).out
    return Spec(inp, stem, tuple(blocks), ch.int(0, 4), ch.pick(FILLS), ch.int(0, 1000))


def _make(kind: str, state, c: int, v: int, j: int) -> B.Block:
    return {**IMG, **SEQ, **BOTH}[kind](state, c, v, j)


class Net(nn.Module):
    """Stem, blocks in sequence with optional skip adds / concats, head."""

    def __init__(self, stem: nn.Module, blocks: list, skips: list, head: nn.Module) -> None:
        super().__init__()
        self.stem, self.blocks, self.head = stem, nn.ModuleList(blocks), head
        self.skips = skips

    def forward(self, x):
        h = self.stem(x)
        outs = [h]
        for blk, (op, k) in zip(self.blocks, self.skips):
            h = blk(h)
            if op == "add":
                h = h + outs[k]
            elif op == "cat":
                h = torch.cat([h, outs[k]], 1 if h.dim() == 4 else -1)
            outs.append(h)
        return self.head(h)


def _skip_state(op: str, state, earlier):
    """The state after a skip, or None when it does not apply to these shapes."""
    if op == "add" and earlier == state:
        return state
    if op == "cat" and earlier[0] == state[0]:
        same = state[2:] == earlier[2:] if state[0] == "img" else state[1] == earlier[1]
        width = (state[1] + earlier[1]) if state[0] == "img" else state[2] + earlier[2]
        if same and width <= 40:
            return state[:1] + (width,) + state[2:] if state[0] == "img" else state[:2] + (width,)
    return None


def build(spec: Spec) -> tuple[nn.Module, torch.Tensor]:
    """The model of ``spec`` (deterministic weights) and its example input. Blocks whose kind
    does not fit the current state (after shrinking a spec) are left out."""
    torch.manual_seed(spec.seed)
    stem = T.Stem(spec.inp, *spec.stem)
    states, blocks, skips = [stem.out], [], []
    for kind, c, v, j, op, back in spec.blocks:
        if kind not in KINDS[states[-1][0]]:
            continue
        blk = _make(kind, states[-1], c, v, j)
        k = min(back, len(states) - 1)
        after = _skip_state(op, blk.out, states[k]) if op else None
        blocks.append(blk)
        skips.append((op, k) if after is not None else ("", 0))
        states.append(after or blk.out)
    return Net(stem, blocks, skips, T.Head(states[-1], spec.head)), make_input(spec, spec.fill)


def make_input(spec: Spec, fill: str, seed: int | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(spec.seed if seed is None else seed)
    shape = spec.inp[1]
    if spec.inp[0] == "ids":
        if fill == "randn":
            return torch.randint(0, spec.inp[2], shape, generator=gen)
        return torch.full(shape, 0 if fill == "zeros" else 1, dtype=torch.long)
    if fill == "randn":
        return torch.randn(shape, generator=gen)
    return torch.zeros(shape) if fill == "zeros" else torch.ones(shape)


def random_model(source) -> tuple[nn.Module, torch.Tensor]:
    """A random model and example input from a hypothesis ``draw`` or a ``random.Random``."""
    return build(random_spec(source))


def specs(max_blocks: int = 6):
    """Hypothesis strategy of `Spec`s (readable falsifying examples; `build` them)."""
    from hypothesis import strategies as st

    return st.composite(lambda draw: random_spec(draw, max_blocks))()


def models(max_blocks: int = 6):
    """Hypothesis strategy of ``(model, example_inputs)``."""
    return specs(max_blocks).map(build)


# ----- the check ------------------------------------------------------------------------------
@dataclass
class Outcome:
    kind: str  # "ok" | "refused" | "failed"
    signature: str = ""  # failure class: stage, exception type, message shape
    detail: str = ""
    slim_kinds: list = field(default_factory=list)  # "eager" / "program", per construction


def _run(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        model.train(was)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _compare(ref: list[torch.Tensor], got: list[torch.Tensor]) -> str | None:
    if len(ref) != len(got):
        return f"{len(got)} outputs instead of {len(ref)}"
    for a, b in zip(ref, got):
        if a.shape != b.shape:
            return f"shape {tuple(b.shape)} instead of {tuple(a.shape)}"
        scale = float(a.abs().max()) if a.numel() else 0.0
        diff = float((a - b).abs().max()) if a.numel() else 0.0
        if not diff <= 1e-5 * max(scale, 1e-12):
            return f"max|diff| {diff:.3g} > 1e-5 * max|y| ({scale:.3g})"
    return None


def _clear_refusal(exc: BaseException) -> bool:
    """TraceError / NothingPrunableError, or a ValueError trainonce itself raised."""
    if isinstance(exc, (trainonce.TraceError, trainonce.NothingPrunableError)):
        return True
    frames = traceback.extract_tb(exc.__traceback__)
    return type(exc) is ValueError and bool(frames) and "/trainonce/" in frames[-1].filename


def signature(stage: str, exc: BaseException | None, text: str = "") -> str:
    msg = text if exc is None else f"{type(exc).__name__}: {str(exc).strip()}"
    first = msg.splitlines()[0] if msg else ""
    first = re.sub(r"'[^']*'", "'_'", first)
    first = re.sub(r"[-\d.e]*\d[\d.e-]*", "N", first)
    first = re.sub(r"\[[N, ]*\]|\([N, ]*\)", "[..]", first)
    return f"{stage}: {first[:110]}"


def check(model: nn.Module, example: torch.Tensor, second: torch.Tensor,
          sparsities=(0.3, 0.7), seeds=(0, 1)) -> Outcome:
    """Refused, ok, or failed (with a signature) for one model; see the module docstring."""
    make_zeroing_visible(model, example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            space = analyze_untouched(model, example, probe=second)
        except Exception as exc:  # noqa: BLE001 - classified, that is the point
            if _clear_refusal(exc):
                return Outcome("refused", type(exc).__name__, str(exc)[:300])
            return _failed("analyze", exc)
        tensors = list(model.parameters()) + list(model.buffers())
        saved = [t.detach().clone() for t in tensors]
        kinds = []
        for sparsity in sparsities:
            for seed in seeds:
                with torch.no_grad():
                    for t, s in zip(tensors, saved):
                        t.copy_(s)
                bad = _one_cut(model, space, example, second, sparsity, seed, kinds)
                if bad is not None:
                    bad.slim_kinds = kinds
                    return bad
    return Outcome("ok", slim_kinds=kinds)


def _one_cut(model, space, example, second, sparsity, seed, kinds) -> Outcome | None:
    where = f"sparsity {sparsity} seed {seed}"
    stage = "zero_random_groups"
    try:
        space.zero_random_groups(sparsity, seed)
        refs = [_run(model, example), _run(model, second)]
        stage = "construct_subnet"
        slim = trainonce.construct_subnet(model, space)
        kind = getattr(getattr(slim, "trainonce_recipe", None), "kind", "?")
        kinds.append(kind)
        for name, x, ref in zip(("example", "second input"), (example, second), refs):
            stage = f"slim on {name} ({kind})"
            problem = _compare(ref, _run(slim, x))
            if problem is not None:
                return Outcome("failed", signature(f"mismatch on {name} ({kind})", None),
                               f"{where}: {problem}")
    except Exception as exc:  # noqa: BLE001 - classified, that is the point
        return _failed(stage, exc, where)
    return None


def _failed(stage: str, exc: BaseException, where: str = "") -> Outcome:
    tb = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in tb if "/trainonce/" in f.filename]
    at = f" at {ours[-1].filename.split('/trainonce/')[-1]}:{ours[-1].name}" if ours else ""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0][:400] if lines else ''}"
    return Outcome("failed", signature(stage, exc), f"{where}{at}: {text}".strip(": "))


def check_spec(spec: Spec, **kw) -> Outcome:
    model, example = build(spec)
    second = make_input(spec, "randn", seed=spec.seed + 1)
    return check(model, example, second, **kw)


def shrink(spec: Spec, same: Callable[[Outcome], bool], budget: int = 40) -> Spec:
    """Greedily drop blocks, or their skips, while ``same(check_spec(smaller))`` holds; at most
    ``budget`` checks."""
    def smaller(blocks: tuple):
        for i in reversed(range(len(blocks))):
            yield blocks[:i] + blocks[i + 1:]
            if blocks[i][4]:
                yield blocks[:i] + (blocks[i][:4] + ("", 0),) + blocks[i + 1:]

    improved = True
    while improved and budget > 0:
        improved = False
        for blocks in smaller(spec.blocks):
            if budget <= 0:
                break
            budget -= 1
            if same(check_spec(replace(spec, blocks=blocks))):
                spec, improved = replace(spec, blocks=blocks), True
                break
    return spec


# variants worth checking one by one (v % n); other kinds vary only in sizes
VARIANTS = {"se": 4, "shuffle": 3, "chunk": 4, "pixel_shuffle": 2, "upsample": 2, "pool": 4,
            "size1_slice": 6, "index_table": 3, "strided": 3, "conv_transpose": 4, "glu": 2,
            "prelu": 2, "bool_mask": 2, "depthwise": 2, "grouped": 2, "branches": 2, "param_mul": 2,
            "to_seq": 2, "attention": 3, "norm": 3, "pos_embed": 2, "seq_size1": 6}


def family_specs() -> dict[str, Spec]:
    """Each kind (and variant) alone between a stem and a pooled head, on an all-zeros example
    (the export idiom that once hid bugs); the check's second input is random."""
    out = {}
    for mode, kinds in KINDS.items():
        inp = ("img", (2, 3, 6, 6)) if mode == "img" else ("feat", (2, 6, 5))
        for kind in kinds:
            for v in range(VARIANTS.get(kind, 1)):
                v = 4 * v - 12 if kind == "size1_slice" and v > 3 else v  # 4 spellings, 3 uses
                block = (kind, 6, v, 3, "", 0)
                out[f"{mode}-{kind}-v{v}"] = Spec(inp, (8, 0), (block,), 0, "zeros", 0)
    # after a block with stale sizes the slim model is the traced program: families again there
    img, seq = ("img", (2, 3, 6, 6)), ("feat", (2, 6, 5))
    stale_img, stale_seq = ("stale_gate", 8, 0, 0, "", 0), ("attention", 8, 2, 1, "", 0)
    for kind, v in (("conv_transpose", 1), ("strided", 1), ("param_slice", 0), ("se", 2),
                    ("shuffle", 1), ("pixel_shuffle", 0), ("grouped", 1), ("depthwise", 1)):
        out[f"program-{kind}-v{v}"] = Spec(img, (8, 0), (stale_img, (kind, 8, v, 3, "", 0)),
                                           0, "zeros", 0)
    for kind in ("pos_embed", "mha", "seq_param_slice", "seq_glu", "mlp"):
        out[f"program-{kind}"] = Spec(seq, (8, 0), (stale_seq, (kind, 8, 0, 3, "", 0)), 0,
                                      "zeros", 0)
    return out
