"""A small deterministic text task shared by the integration tests: each sequence of random
tokens holds one marker token (10, 11 or 12) and its class is which one (a tiny BERT learns it)."""

from __future__ import annotations

import torch

VOCAB, LENGTH, CLASSES = 64, 8, 3


def bert(num_labels: int = CLASSES):
    import transformers as T

    cfg = T.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=16,
                       num_labels=num_labels, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return T.BertForSequenceClassification(cfg)


def marker_task(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences (token ids [n, LENGTH]) and their classes [n]."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(13, VOCAB, (n, LENGTH), generator=gen)
    labels = torch.randint(0, CLASSES, (n,), generator=gen)
    where = torch.randint(0, LENGTH, (n,), generator=gen)
    ids[torch.arange(n), where] = 10 + labels
    return ids, labels


class MarkerDataset(torch.utils.data.Dataset):
    """`marker_task` as the dicts a `transformers.Trainer` batches."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.ids, self.labels = marker_task(n, seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}
