"""FLOPs (MACs) and parameter counts from the graph, checked against hand counts."""

import pytest
import torch
from torch import nn

import trainonce


def test_macs_of_conv_linear_and_attention_match_hand_counts():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc = nn.Linear(8, 4)
            self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 4)  # a prunable MLP

        def forward(self, x):
            y = self.dw(torch.relu(self.conv(x)))  # [2, 8, 6, 6]
            t = y.flatten(2).transpose(1, 2)  # [2, 36, 8] tokens
            a = torch.nn.functional.scaled_dot_product_attention(
                t.unsqueeze(1), t.unsqueeze(1), t.unsqueeze(1))  # one head
            pooled = a.squeeze(1).mean(1)
            return self.fc(pooled) + self.down(torch.relu(self.up(pooled)))

    space = trainonce.analyze(Net(), torch.randn(2, 3, 6, 6))
    conv = 2 * 8 * 36 * 3 * 9
    dw = 2 * 8 * 36 * 1 * 9
    attn = 2 * 1 * 36 * 36 * (8 + 8)
    fc = 2 * 8 * 4 + 2 * 8 * 16 + 2 * 16 * 4
    assert space.flops() == conv + dw + attn + fc
    reasons = {g.reason for g in space.groups if not g.prunable}
    assert any("attention sequence/head_dim" in r for r in reasons)  # one head: kept whole
    assert space.num_params() == sum(p.numel() for p in Net().parameters())


def test_flops_of_a_keep_mask_is_bilinear_in_both_dims():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    space = trainonce.analyze(model, torch.randn(3, 4))
    keep = torch.ones(space.num_zigs, dtype=torch.bool)
    keep[0] = False  # one hidden unit of the first layer
    keep[6] = False  # one hidden unit of the second layer
    assert space.flops(keep) == 3 * (4 * 5 + 5 * 4 + 4 * 2)
    assert space.flops() == 3 * (4 * 6 + 6 * 5 + 5 * 2)
    assert float(space.zig_flops()[0]) == pytest.approx(3.0 * (4 + 5), rel=1e-12)
