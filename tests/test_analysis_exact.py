"""Analysis stays exact: groups keyed by their full structure (no hash)."""

import pytest
import torch

import trainonce
from trainonce.space.build import group_by_structure

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


def test_groups_on_real_models_are_those_of_the_hashed_key():
    """Figures recorded with the former (hashed) grouping: same groups and ZIGs."""
    torchvision = pytest.importorskip("torchvision")
    pytest.importorskip("transformers")
    from hf_models import bert

    torch.manual_seed(0)
    space = trainonce.analyze(torchvision.models.resnet18(weights=None),
                              torch.randn(2, 3, 32, 32))
    assert (len(space.groups), space.num_prunable_zigs) == (48, 2880)
    assert sum(g.size for g in space.groups) == 3993
    model, inputs = bert()
    space = trainonce.analyze(model, inputs)
    assert (len(space.groups), space.num_prunable_zigs) == (33, 168)
    assert sum(g.size for g in space.groups) == 1021
