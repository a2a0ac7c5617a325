"""The loop: micro-batching is exact, resume equals an uninterrupted run, early stopping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dlsys.training.data import load_dataset
from dlsys.training.experiments import suggest_lr
from dlsys.training.loop import (
    EarlyStopping,
    TrainConfig,
    batch_size_at,
    flood_sign,
    load_checkpoint,
    train,
)
from dlsys.training.models import flooding_loss


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", seed=0)


def no_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


@pytest.mark.parametrize("kernels", ["torch", "dlsys"])
@pytest.mark.parametrize("flood", [0.0, 5.0])
def test_micro_batches_give_the_full_batch_update(data, kernels: str, flood: float) -> None:
    # One update of batch 64. With torch's layers the CNN keeps 43,130 values per sample
    # (input 784 + conv 12,544 + ReLU 12,544 + pool 3,136 + conv 6,272 + ReLU 6,272 + pool
    # 1,568 + linear 10; 3 * 4 * 43,130 = 517,560 bytes), so a 4 MiB budget gives
    # micro-batches of 4 * 2**20 // 517,560 = 8. dlsys's fused conv-ReLU-pool blocks write
    # only their pooled outputs: 784 + 3,136 + 1,568 + 10 = 5,498 values (65,976 bytes), so
    # 4 * 2**20 // 65,976 = 63: micro-batches of 63 and 1.
    # With flood = 5 nats (> the ~2.3 nats initial CE) the update ascends the loss: the
    # accumulated gradient must be negated exactly as |CE - b| + b does on the full batch.
    base = dict(model="cnn", epochs=1, batch_size=64, lr=0.1, momentum=0.9, kernels=kernels)
    base.update(flood=flood, max_updates=1, track_test=False)
    full = train(TrainConfig(**base, memory_budget_mb=1024.0), data)
    micro = train(TrainConfig(**base, memory_budget_mb=4.0), data)
    assert full.micro_batch >= 64 and micro.micro_batch == {"torch": 8, "dlsys": 63}[kernels]
    assert full.steps[0]["loss"] == pytest.approx(micro.steps[0]["loss"], rel=1e-5)
    assert full.model is not None and micro.model is not None
    for (k, a), b in zip(
        full.model.state_dict().items(), micro.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=k)
    # The flooded update moved the weights the other way from the plain one.
    if flood:
        plain = train(TrainConfig(**{**base, "flood": 0.0}, memory_budget_mb=1024.0), data)
        assert plain.model is not None
        w0 = plain.model.state_dict()["classifier.weight"]
        w1 = full.model.state_dict()["classifier.weight"]
        torch.manual_seed(0)
        assert not torch.allclose(w0, w1)


def test_batch_schedule_doubles_every_s_updates() -> None:
    cfg = TrainConfig(batch_schedule={"start": 32, "factor": 2, "every": 5, "max": 8192})
    # updates 0-4 -> 32, 5-9 -> 64, ...; 32 * 2**8 = 8192 from update 40 on, capped there.
    assert [batch_size_at(cfg, u) for u in (0, 4, 5, 9, 10, 39, 40, 1000)] == [
        32, 32, 64, 64, 128, 4096, 8192, 8192,
    ]  # fmt: skip


def _resume_config() -> TrainConfig:
    # Everything that carries state across epochs: momentum, a cyclic LR stepped per update,
    # a batch-size schedule that changes mid-epoch, early-stopping bookkeeping.
    return TrainConfig(
        model="mlp:32",
        epochs=5,
        batch_size=16,
        lr=0.01,
        momentum=0.9,
        kernels="torch",
        scheduler={
            "name": "cyclic",
            "mode": "triangular2",
            "base_lr": 0.001,
            "max_lr": 0.05,
            "step_size_up": 7,
        },
        batch_schedule={"start": 16, "factor": 2, "every": 20, "max": 128},
        patience=10,
        restore_best=True,
    )


def test_resume_after_interrupt_matches_uninterrupted_run(data, tmp_path: Path) -> None:
    cfg = _resume_config()
    whole = train(cfg, data, checkpoint=tmp_path / "whole.pt")

    class Interrupt(Exception):
        pass

    def stop_after_two(rec: dict[str, Any]) -> None:
        if rec["epoch"] == 2:
            raise Interrupt

    ck = tmp_path / "part.pt"
    with pytest.raises(Interrupt):
        train(cfg, data, checkpoint=ck, on_epoch_end=stop_after_two)
    saved = load_checkpoint(ck)  # torch.load(weights_only=True)
    assert saved["epoch"] == 2 and not saved["done"]
    resumed = train(cfg, data, checkpoint=ck, resume=True)
    assert no_time(resumed.history) == no_time(whole.history)
    assert no_time(resumed.steps) == no_time(whole.steps)
    assert resumed.final == whole.final
    assert whole.model is not None and resumed.model is not None
    for a, b in zip(
        whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    # The checkpoint loads with weights_only=True directly, too.
    torch.load(ck, weights_only=True)
    # A finished run resumes to itself without training.
    again = train(cfg, data, checkpoint=ck, resume=True)
    assert no_time(again.history) == no_time(whole.history)


def test_resume_with_a_different_config_names_the_keys(data, tmp_path: Path) -> None:
    cfg = TrainConfig(model="mlp:16", epochs=1, batch_size=32, lr=0.01, kernels="torch")
    train(cfg, data, checkpoint=tmp_path / "c.pt")
    other = TrainConfig(model="mlp:16", epochs=1, batch_size=64, lr=0.02, kernels="torch")
    with pytest.raises(ValueError) as exc:
        train(other, data, checkpoint=tmp_path / "c.pt", resume=True)
    msg = str(exc.value)
    assert "train.batch_size: checkpoint=32, now=64" in msg
    assert "train.lr: checkpoint=0.01, now=0.02" in msg
    assert "train.epochs" not in msg


def test_same_seed_same_metrics_other_seed_differs(data) -> None:
    cfg = TrainConfig(model="mlp:16", epochs=2, batch_size=32, lr=0.05, kernels="torch")
    a, b = train(cfg, data), train(cfg, data)
    assert no_time(a.history) == no_time(b.history)
    c = train(TrainConfig(**{**cfg.__dict__, "seed": 1}), data)
    assert no_time(c.history) != no_time(a.history)


def test_early_stopping_and_restore_best(data) -> None:
    # lr 0.5 with momentum 0.9 makes validation accuracy wander; patience 1 stops at the first
    # epoch without improvement and the returned model is the best epoch's.
    cfg = TrainConfig(
        model="mlp:16",
        epochs=30,
        batch_size=32,
        lr=0.5,
        momentum=0.9,
        kernels="torch",
        patience=1,
        restore_best=True,
    )
    r = train(cfg, data)
    accs = [h["val_acc"] for h in r.history]
    assert r.epochs_run < 30
    assert accs[-1] <= max(accs[:-1])  # stopped on a non-improving epoch
    assert r.best_epoch == accs.index(max(accs)) + 1
    assert r.final["val_acc"] == pytest.approx(max(accs))
    assert r.updates_to_best == r.history[r.best_epoch - 1]["updates"]


def test_bad_config_values_are_named() -> None:
    with pytest.raises(ValueError, match="epochs: must be >= 1, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="batch_size: must be >= 1, got -1"):
        TrainConfig(batch_size=-1)
    with pytest.raises(ValueError, match="lr: must be > 0, got 0"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match=r"flood: must be >= 0, got -0\.01"):
        TrainConfig(flood=-0.01)
    with pytest.raises(ValueError, match="did you mean 'adam'"):
        TrainConfig(optimizer="adma")


def test_suggest_lr_rule_by_hand() -> None:
    lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    losses = [2.30, 2.29, 2.00, 1.00, 0.50, float("inf")]
    s = suggest_lr(lrs, losses)
    # minimum 0.50 at lr 1e-1; 10% of the fall 2.30 -> 0.50 is 0.18: first loss <= 2.12 is
    # 2.00 at lr 1e-3.
    assert s["lr_max"] == 1e-1 and s["lr_min"] == 1e-3


@pytest.mark.gpu
@pytest.mark.parametrize("kernels", ["torch", "dlsys"])
def test_training_on_cuda_keeps_data_on_the_device(kernels: str) -> None:
    d = load_dataset("synthetic", seed=0, device="cuda")
    assert d.train_x.is_cuda
    cfg = TrainConfig(model="cnn", epochs=3, batch_size=32, lr=0.05, momentum=0.9, kernels=kernels)
    r = train(cfg, d)
    assert r.model is not None and next(r.model.parameters()).is_cuda
    # Synthetic templates are separable: 3 epochs take training loss well below ln 10 = 2.30.
    assert r.history[-1]["train_loss"] < 1.0


@pytest.mark.parametrize("kernels", ["torch", "dlsys"])
def test_flood_sign_is_the_fused_losses_gradient_rule(kernels: str) -> None:
    # One rule, two paths: the gradient of the fused |CE - b| + b equals
    # flood_sign(CE, b) * grad CE, the rule the micro-batch path applies.
    torch.manual_seed(0)
    logits = torch.randn(6, 10, dtype=torch.float64)
    y = torch.arange(6) % 10
    ce = float(torch.nn.functional.cross_entropy(logits, y))
    for b in (0.0, ce / 2, ce * 2):  # no flooding, above the flood level, below it
        z1 = logits.clone().requires_grad_(True)
        flooding_loss(b, kernels)(z1.float() if kernels == "dlsys" else z1, y).backward()
        z2 = logits.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(z2, y).backward()
        assert z1.grad is not None and z2.grad is not None
        expected = flood_sign(ce, b) * z2.grad
        torch.testing.assert_close(z1.grad, expected, rtol=1e-5, atol=1e-6)
    assert flood_sign(2.0, 0.0) == 1.0 and flood_sign(1.0, 2.0) == -1.0
    assert flood_sign(2.0, 2.0) == 0.0  # torch.abs's gradient at 0


def test_early_stopping_state_by_hand() -> None:
    es = EarlyStopping(patience=2)
    # val acc .5 (best), .4 (1 bad), .6 (best, resets), .6 (1 bad: not strictly above), .1
    assert es.update(1, 0.5, updates=10, elapsed=1.0) is True
    assert es.update(2, 0.4) is False and not es.should_stop
    assert es.update(3, 0.6, updates=30, elapsed=3.0) is True and es.bad_epochs == 0
    assert es.update(4, 0.6) is False and not es.should_stop
    assert es.update(5, 0.1) is False and es.should_stop  # two in a row
    assert (es.best_epoch, es.updates_to_best, es.time_to_best) == (3, 30, 3.0)
    assert EarlyStopping.from_state(2, es.state_dict()) == es
    assert not EarlyStopping(patience=None, bad_epochs=100).should_stop  # None: never stops
