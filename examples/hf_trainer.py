"""The Hugging Face ``Trainer`` integration: ``TrainOnceTrainer`` trains a tiny BERT (built from a
config, nothing downloaded) with a trainonce optimizer sized by the Trainer's own step count,
logs sparsity and FLOPs kept, and writes the slim model at the end.

Run from a checkout: ``HF_HUB_OFFLINE=1 python examples/hf_trainer.py [--smoke]``
(``--smoke``: a few steps, seconds). Needs the ``hf`` extra (transformers + accelerate).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a config-built model: never reach the Hub

import torch  # noqa: E402

import trainonce  # noqa: E402
from trainonce.zoo import import_torchvision  # noqa: E402

try:  # transformers imports torchvision when installed; this also loads a CUDA-only build
    import_torchvision()
except ImportError:
    pass  # no torchvision: transformers does without it
import transformers  # noqa: E402

from trainonce.integrations.transformers import TrainOnceCallback, TrainOnceTrainer  # noqa: E402


class MarkerDataset(torch.utils.data.Dataset):
    """Random token sequences holding one marker token (10, 11 or 12), whose class it is."""

    def __init__(self, n: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(13, 64, (n, 8), generator=gen)
        self.labels = torch.randint(0, 3, (n,), generator=gen)
        self.ids[torch.arange(n), torch.randint(0, 8, (n,), generator=gen)] = 10 + self.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def bert() -> torch.nn.Module:
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        vocab_size=64, max_position_embeddings=16, num_labels=3))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        callback = TrainOnceCallback({"input_ids": torch.randint(0, 64, (2, 8))},
                                     optimizer="hesso", target_flops=0.5, variant="adamw")
        targs = transformers.TrainingArguments(
            output_dir=out, max_steps=8 if args.smoke else 200, learning_rate=1e-2,
            per_device_train_batch_size=16, logging_steps=4, save_strategy="no",
            report_to="none", use_cpu=True, disable_tqdm=True, seed=0)
        trainer = TrainOnceTrainer(model=bert(), args=targs, train_dataset=MarkerDataset(512),
                                   trainonce=callback)
        trainer.train()
        print([r for r in trainer.state.log_history if "trainonce/flops_kept" in r][-1])
        slim = trainonce.load(Path(out) / "slim", bert).eval()  # the callback wrote it
        test = MarkerDataset(256, seed=1)
        with torch.no_grad():
            assert torch.allclose(slim(input_ids=test.ids).logits,
                                  callback.slim(input_ids=test.ids).logits, atol=1e-5)
            acc = (slim(input_ids=test.ids).logits.argmax(1) == test.labels).float().mean()
    print(f"slim BERT reloaded from the callback's slim/: test accuracy {acc:.3f} (chance 0.33)")


if __name__ == "__main__":
    main()
