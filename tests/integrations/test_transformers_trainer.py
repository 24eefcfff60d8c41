"""`TrainOnceTrainer` + `TrainOnceCallback`: a tiny BERT trained and pruned by a real
`transformers.Trainer` (offline, CPU); logs, bit-exact resume, the slim model written at the end.
The code under "docs" is the one docs/integrations.md shows."""

import pytest
import torch

pytest.importorskip("accelerate")
pytest.importorskip("transformers")
from text_task import MarkerDataset, bert  # noqa: E402

import trainonce  # noqa: E402


def train(out, max_steps=24, resume=None):
    # --- docs: transformers ---
    from transformers import TrainingArguments

    from trainonce.integrations.transformers import TrainOnceCallback, TrainOnceTrainer

    model = bert()
    example = {"input_ids": torch.randint(0, 64, (2, 8))}
    callback = TrainOnceCallback(example, optimizer="hesso", target_flops=0.5, variant="adamw")
    args = TrainingArguments(output_dir=str(out), max_steps=max_steps, learning_rate=1e-2,
                             per_device_train_batch_size=16, logging_steps=4, save_steps=12,
                             report_to="none", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = TrainOnceTrainer(model=model, args=args, train_dataset=MarkerDataset(384),
                               trainonce=callback)
    trainer.train(resume_from_checkpoint=resume)
    slim = callback.slim  # also saved in out/slim (trainonce.save)
    # --- end docs ---
    return trainer, callback, slim


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf") / "whole"
    return out, *train(out)


def test_optimizer_is_the_trainers_and_sized_by_its_step_count(whole):
    _, trainer, callback, _ = whole
    assert trainer.optimizer.optimizer is callback.pruning.opt  # accelerate's wrapper around it
    assert callback.pruning.opt.schedule.total == 24 == trainer.state.max_steps
    group = callback.pruning.opt.param_groups[0]
    assert group["weight_decay"] == trainer.args.weight_decay  # the Trainer's, by default


def test_logs_carry_sparsity_and_flops(whole):
    _, trainer, callback, _ = whole
    logged = [h for h in trainer.state.log_history if "trainonce/flops_kept" in h]
    assert [h["step"] for h in logged] == [4, 8, 12, 16, 20, 24]
    assert logged[0]["trainonce/group_sparsity"] == 0.0
    assert logged[-1]["trainonce/group_sparsity"] > 0.2
    assert logged[-1]["trainonce/flops_kept"] < 0.9
    assert logged[-1]["trainonce/flops_kept"] == callback.pruning.opt.metrics()["flops_kept"]


def test_slim_model_written_and_equal_to_the_trained_one(whole):
    out, trainer, _, slim = whole
    ids = MarkerDataset(16, seed=1).ids
    model = trainer.model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        assert torch.allclose(slim(input_ids=ids).logits, ref, atol=1e-5)
        reloaded = trainonce.load(out / "slim", bert)
        assert torch.equal(reloaded(input_ids=ids).logits, slim(input_ids=ids).logits)
    n = sum(p.numel() for p in slim.parameters())
    assert n < sum(p.numel() for p in model.parameters())


def test_resume_from_checkpoint_is_bit_exact(whole, tmp_path):
    out, trainer, _, _ = whole
    again, _, _ = train(tmp_path / "resumed", resume=str(out / "checkpoint-12"))
    full = dict(trainer.model.named_parameters())
    for name, p in again.model.named_parameters():
        assert torch.equal(p, full[name]), name


def test_plain_trainer_with_the_callback_is_refused(tmp_path):
    from transformers import Trainer, TrainingArguments

    from trainonce.integrations.transformers import TrainOnceCallback

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, report_to="none",
                             use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=bert(), args=args, train_dataset=MarkerDataset(8),
                      callbacks=[TrainOnceCallback({"input_ids": torch.zeros(1, 8).long()})])
    with pytest.raises(RuntimeError, match="TrainOnceTrainer"):
        trainer.train()


def test_optimizer_passed_by_hand_is_refused():
    from trainonce.integrations.transformers import TrainOnceCallback, TrainOnceTrainer

    opt = torch.optim.SGD(bert().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="leave optimizers out"):
        TrainOnceTrainer(model=bert(), trainonce=TrainOnceCallback({}), optimizers=(opt, None))


def test_slim_model_learned_the_task(whole):
    """Pruned to about half the FLOPs in 24 steps, it still beats chance (1/3) clearly."""
    test = MarkerDataset(300, seed=5)
    with torch.no_grad():
        acc = (whole[3](input_ids=test.ids).logits.argmax(1) == test.labels).float().mean()
    assert acc > 0.5
