"""Analysis stays exact and fast: groups keyed by their full structure (no hash), and the
rectangular refinement of joint axes agrees with the plain round-by-round definition."""

import pytest
import torch

import trainonce
from trainonce.graph.components import components
from trainonce.graph.labels import Labels, Recorder, spans
from trainonce.graph.propagate import Propagation
from trainonce.space import build
from trainonce.space.build import _roots, group_by_structure

# -- grouping: an exact key -------------------------------------------------------------------


def _reference_groups(row_zig, row_pd, count, blocked):
    keys: dict[int, list] = {z: [bool(b)] for z, b in enumerate(blocked.tolist())}
    for z, d, c in zip(row_zig.tolist(), row_pd.tolist(), count.tolist()):
        keys[z].append((d, c))
    return [tuple(keys[z]) for z in range(blocked.numel())]


def _assert_partition(group, keys):
    for i in range(len(keys)):
        for j in range(len(keys)):
            assert (int(group[i]) == int(group[j])) == (keys[i] == keys[j]), (i, j)


def test_zigs_whose_old_hashed_signatures_collide_stay_apart():
    # the former key: sum over a ZIG's rows of w[dim] * (count + 1), w random 40-bit
    w = torch.randint(1, 1 << 40, (2,), generator=torch.Generator().manual_seed(0))
    row_zig, row_pd = torch.tensor([0, 1]), torch.tensor([0, 1])
    count = torch.stack([w[1] - 1, w[0] - 1])  # w0 * w1 == w1 * w0
    sig = torch.zeros(2, dtype=torch.long).index_add_(0, row_zig, w[row_pd] * (count + 1))
    assert sig[0] == sig[1]
    group = group_by_structure(row_zig, row_pd, count, torch.zeros(2, dtype=torch.bool))
    assert group[0] != group[1]


def test_same_rows_in_other_order_or_split_differently_are_different_groups():
    # ZIG 0: dim 0 x1, dim 1 x2 ; ZIG 1: dim 0 x2, dim 1 x1 ; ZIG 2: dim 0 x3 ; ZIG 3 like 0
    row_zig = torch.tensor([0, 0, 1, 1, 2, 3, 3])
    row_pd = torch.tensor([0, 1, 0, 1, 0, 0, 1])
    count = torch.tensor([1, 2, 2, 1, 3, 1, 2])
    blocked = torch.tensor([False, False, False, False, True])[:4]
    group = group_by_structure(row_zig, row_pd, count, blocked)
    assert group[0] == group[3] and len(set(group.tolist())) == 3
    blocked[3] = True
    group = group_by_structure(row_zig, row_pd, count, blocked)
    assert len(set(group.tolist())) == 4


@pytest.mark.parametrize("seed", range(20))
def test_grouping_matches_a_dictionary_of_row_sequences(seed):
    g = torch.Generator().manual_seed(seed)
    nz, n_pd = 60, 4
    # few dims and small counts, so that equal and nearly-equal structures are common
    owns = torch.rand(nz, n_pd, generator=g) < 0.5
    owns[torch.arange(nz), torch.randint(0, n_pd, (nz,), generator=g)] = True
    row_zig, row_pd = torch.nonzero(owns, as_tuple=True)
    count = torch.randint(1, 3, (row_zig.numel(),), generator=g)
    blocked = torch.rand(nz, generator=g) < 0.2
    group = group_by_structure(row_zig, row_pd, count, blocked)
    _assert_partition(group, _reference_groups(row_zig, row_pd, count, blocked))


@pytest.mark.parametrize("seed", range(5))
def test_grouping_is_exact_when_every_hash_collides(monkeypatch, seed):
    """The proposal is only a hash: with one that merges all ZIGs of one length, the check
    must catch it and the groups be rebuilt exactly."""
    def by_length_only(row_zig, place, pair, base):
        return torch.unique(base, return_inverse=True)[1]

    monkeypatch.setattr(build, "_hashed_groups", by_length_only)
    test_grouping_matches_a_dictionary_of_row_sequences(seed)


def test_groups_on_real_models_are_those_of_the_hashed_key(analysed):
    """Figures recorded with the former (hashed) grouping: same groups and ZIGs."""
    pytest.importorskip("torchvision")
    pytest.importorskip("transformers")
    from hf_models import bert

    _, _, space = analysed("resnet18", 32)
    assert (len(space.groups), space.num_prunable_zigs) == (48, 2880)
    assert sum(g.size for g in space.groups) == 3993
    model, inputs = bert()
    space = trainonce.analyze(model, inputs)
    assert (len(space.groups), space.num_prunable_zigs) == (33, 168)
    assert sum(g.size for g in space.groups) == 1021


# -- rectangular refinement: same result as the plain rounds ----------------------------------


def _plain_roots(prop: Propagation) -> tuple[torch.Tensor, int]:
    """The definition, round by round: every joint axis decides on the previous round's roots;
    stop when no axis coarsens, or when a round changed no root (it would repeat forever).
    Also returns the number of rounds that coarsened something."""
    rec = prop.rec
    joint = [a for x in prop.labels.values() if isinstance(x, Labels)
             for a in x.axes if len(spans(a)) > 1]
    prev, rounds = None, 0
    while True:
        roots = components(rec.next_atom, *rec.edges())
        if prev is not None and torch.equal(prev, roots):
            return roots, rounds
        prev, changed = roots, False
        for ax in joint:
            r = roots[ax]
            varying = [d for d in sorted(spans(ax)) if not bool((r == r.narrow(d, 0, 1)).all())]
            if len(varying) < 2:
                continue

            def distinct(d: int, r=r) -> int:
                idx = tuple(slice(None) if k == d else 0 for k in range(r.dim()))
                return int(torch.unique(r[idx]).numel())

            keep = max(varying, key=distinct)
            axis = ax
            for d in varying:
                if d != keep:
                    axis = rec.coarsen(axis, d, "a tensor that must stay rectangular")
            changed = True
        if not changed:
            return roots, rounds
        rounds += 1


def _random_prop(seed: int) -> Propagation:
    g = torch.Generator().manual_seed(seed)
    rec = Recorder()
    n = int(torch.randint(8, 40, (), generator=g))
    rec.fresh(n)
    labels = {}
    for i in range(int(torch.randint(1, 6, (), generator=g))):
        ndim = int(torch.randint(2, 4, (), generator=g))
        shape = tuple(int(s) for s in torch.randint(1, 4, (ndim,), generator=g))
        # atoms from a small pool (so axes share atoms) and some unremovable zeros
        ax = torch.randint(1, n + 1, shape, generator=g)
        ax[torch.rand(shape, generator=g) < 0.1] = 0
        labels[f"t{i}"] = Labels(shape, [ax])
    m = int(torch.randint(0, n, (), generator=g))
    rec.union(torch.randint(1, n + 1, (m,), generator=g),
              torch.randint(1, n + 1, (m,), generator=g), "an edge")
    prop = Propagation(rec)
    prop.labels = labels
    return prop


def _blocked(rec: Recorder) -> set[tuple[int, str]]:
    atoms, rids = rec.blocked()
    return {(a, rec.reasons[r]) for a, r in zip(atoms.tolist(), rids.tolist())}


@pytest.mark.parametrize("seed", range(300))
def test_refinement_matches_the_plain_rounds(seed):
    mine, plain = _random_prop(seed), _random_prop(seed)
    assert torch.equal(_roots(mine), _plain_roots(plain)[0])
    assert _blocked(mine.rec) == _blocked(plain.rec)


def test_random_cases_need_several_rounds():
    """The cases above are worth something only if many coarsen over 2+ rounds, where a round
    sees the merges of the previous one (and an axis must be looked at again)."""
    rounds = [_plain_roots(_random_prop(seed))[1] for seed in range(300)]
    assert sum(r >= 2 for r in rounds) > 100 and max(rounds) >= 3


def test_components_incremental_equals_from_scratch():
    g = torch.Generator().manual_seed(0)
    n = 500
    a, b = torch.randint(0, n, (2, 400), generator=g)
    first = components(n, a[:250], b[:250])
    assert torch.equal(components(n, a[250:], b[250:], parent=first), components(n, a, b))


@pytest.mark.timeout(300)
def test_padded_heads_finish_and_are_kept_whole():
    """efficientvit's attention pads each head with a constant column: an axis that keeps
    varying (atom 0 can never merge). The refinement used to repeat forever on it."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("efficientvit_b0", num_classes=10)
    space = trainonce.analyze(model, torch.randn(1, 3, 64, 64))
    # figures of the plain rounds stopped once stationary (checked side by side when written)
    assert (len(space.groups), space.num_prunable_zigs) == (62, 3480)
    heads = [g for g in space.groups if "qkv" in g.name]
    assert [g.size for g in heads] == [4, 4, 8, 8] and not any(g.prunable for g in heads)
