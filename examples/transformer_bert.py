"""A transformer: a tiny BERT classifier (built from a config, nothing downloaded) trained on a
token task while HESSO prunes its attention heads and MLP neurons to half the FLOPs; the slim
model round-trips through ``trainonce.hf.save_pretrained`` / ``from_pretrained``.

Run from a checkout: ``HF_HUB_OFFLINE=1 python examples/transformer_bert.py [--smoke]``
(``--smoke``: a few steps, seconds). Needs the ``hf`` extra.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a config-built model: never reach the Hub

import torch  # noqa: E402

import trainonce  # noqa: E402
import trainonce.hf  # noqa: E402
from trainonce.testing import minibatches  # noqa: E402
from trainonce.zoo import import_torchvision  # noqa: E402

try:  # transformers imports torchvision when installed; this also loads a CUDA-only build
    import_torchvision()
except ImportError:
    pass  # no torchvision: transformers does without it
import transformers  # noqa: E402


def marker_task(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences, each holding one marker token (10, 11 or 12): the class."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(13, 64, (n, 8), generator=gen)
    labels = torch.randint(0, 3, (n,), generator=gen)
    ids[torch.arange(n), torch.randint(0, 8, (n,), generator=gen)] = 10 + labels
    return ids, labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        vocab_size=64, max_position_embeddings=16, num_labels=3, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)
    model = transformers.BertForSequenceClassification(config)
    ids, labels = marker_task(64 if args.smoke else 2048)
    test_ids, test_labels = marker_task(256, seed=1)
    space = trainonce.analyze(model, {"input_ids": ids[:2]})  # heads + MLP neurons
    print(space.summary(max_rows=6))
    epochs = 2 if args.smoke else 10
    steps = epochs * ((len(labels) + 31) // 32)
    opt = trainonce.HESSO(space, lr=1e-2, variant="adamw", target_flops=0.5, total_steps=steps)
    model.train()
    for idx in minibatches(len(labels), epochs, batch_size=32):
        opt.zero_grad()
        model(input_ids=ids[idx], labels=labels[idx]).loss.backward()
        opt.step()
    print(opt.metrics())
    slim = trainonce.construct_subnet(model.eval(), space)  # same logits, checked
    with torch.no_grad():
        acc = (slim(input_ids=test_ids).logits.argmax(1) == test_labels).float().mean()
    print(f"slim: FLOPs kept {opt.metrics()['flops_kept']:.2f}, test accuracy {acc:.3f} "
          "(chance 0.33)")
    with tempfile.TemporaryDirectory() as tmp:
        trainonce.hf.save_pretrained(slim, tmp)  # not transformers' own: widths may differ
        back = trainonce.hf.from_pretrained(tmp)
        with torch.no_grad():
            assert torch.equal(back(input_ids=test_ids).logits, slim(input_ids=test_ids).logits)
    print("slim BERT saved and reloaded with trainonce.hf: same logits")


if __name__ == "__main__":
    main()
