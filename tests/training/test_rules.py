"""The experiments' decision rules, each checked on inputs worked out by hand."""

from __future__ import annotations

import math

import pytest

from dlsys.training.experiments.defaults import DEFAULTS, PRESETS, default
from dlsys.training.experiments.registry import EXPERIMENTS
from dlsys.training.experiments.rules import (
    DivergenceStop,
    choose_flood_level,
    early_stop_epoch,
    flood_grid,
    ramp_milestones,
    smooth_losses,
)


def test_flood_level_best_validation_accuracy_ties_to_the_smaller_b() -> None:
    assert choose_flood_level({0.0: 0.90, 0.05: 0.93, 0.1: 0.92}) == 0.05
    # 0.05 and 0.15 tie at 0.93: the smaller b wins, whatever the order of the mapping
    assert choose_flood_level({0.15: 0.93, 0.0: 0.90, 0.05: 0.93}) == 0.05
    assert choose_flood_level({0.0: 0.5}) == 0.0
    with pytest.raises(ValueError, match="no flood levels"):
        choose_flood_level({})


def test_flood_grid_adds_zero_sorts_and_refuses_bad_levels() -> None:
    assert flood_grid([0.1, 0.05, 0.1]) == [0.0, 0.05, 0.1]
    assert flood_grid([]) == [0.0]
    for bad in (-0.1, math.nan, True, "0.1"):  # ValueError for values, TypeError for types
        with pytest.raises((ValueError, TypeError), match="--b-grid"):
            flood_grid([bad])


def test_early_stop_epoch_by_hand() -> None:
    # val acc:  .5  .6  .6  .55  .7 ; patience 2
    # epoch 1 best, 2 best, 3 no (1 bad), 4 no (2 bad) -> stops at 4, restores 2
    assert early_stop_epoch([0.5, 0.6, 0.6, 0.55, 0.7], 2) == (4, 2)
    # patience 3: the 5th epoch improves before the third bad epoch -> never stops, best 5
    assert early_stop_epoch([0.5, 0.6, 0.6, 0.55, 0.7], 3) == (None, 5)
    # a non-finite accuracy never improves: NaN, NaN with patience 2 stops at 2, restores 0
    assert early_stop_epoch([math.nan, math.nan], 2) == (2, 0)
    assert early_stop_epoch([], 1) == (None, 0)
    with pytest.raises(ValueError, match="patience: must be >= 1, got 0"):
        early_stop_epoch([0.5], 0)


def test_ramp_milestones_follow_the_ramp_in_samples_seen() -> None:
    # start 32, max 256, every 20: ramp steps to 64, 128, 256 (3 doublings);
    # decay milestones at 20 * (2**k - 1) = 20, 60, 140 updates
    assert ramp_milestones(32, 256, 20) == [20, 60, 140]
    # 32 -> 8192 is 2**8: eight milestones, the last 20 * 255 = 5100
    m = ramp_milestones(32, 8192, 20)
    assert len(m) == 8 and m[-1] == 5100
    # samples seen agree: the ramp after k steps saw every * 32 * (2**k - 1) samples,
    # the fixed batch of 32 after m_k updates saw 32 * m_k
    assert all(32 * mk == 20 * 32 * (2**k - 1) for k, mk in enumerate(m, 1))
    # max not a power of two times start: 32 -> 100 has doublings to 64 only
    assert ramp_milestones(32, 100, 5) == [5]
    # factor 3, every 4: steps to 3 and 9 -> 4 * (3 - 1) / 2 = 4 and 4 * (9 - 1) / 2 = 16
    assert ramp_milestones(1, 10, 4, factor=3) == [4, 16]
    assert ramp_milestones(32, 32, 20) == []
    with pytest.raises(ValueError, match="max_batch: must be >= 32, got 16"):
        ramp_milestones(32, 16, 20)


def test_smooth_losses_is_bias_corrected() -> None:
    # constant input comes back unchanged (the point of the correction)
    assert smooth_losses([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    # beta 0.5: avg1 = 0.5 * 4 = 2 -> 2 / 0.5 = 4; avg2 = 0.5 * 2 + 0.5 * 0 = 1 -> 1 / 0.75
    assert smooth_losses([4.0, 0.0], beta=0.5) == pytest.approx([4.0, 4 / 3])


def test_divergence_stop_after_warmup_at_4x_the_best() -> None:
    stop = DivergenceStop(beta=0.5, factor=4.0, warmup=2)
    # avg1 = 0.5, avg2 = 0.5 * 0.5 + 0.5 * 1 = 0.75; smoothed 0.5 / 0.5 = 1, 0.75 / 0.75 = 1
    assert stop(1.0) is False and stop(1.0) is False
    # third loss 20: avg = 0.5 * 0.75 + 0.5 * 20 = 10.375; / (1 - 0.125) = 11.857 > 4 * 1
    assert stop(20.0) is True
    early = DivergenceStop(beta=0.5, factor=4.0, warmup=2)
    # within the warm-up a blow-up does not stop the sweep (n = 2 is not > 2)...
    assert early(1.0) is False and early(100.0) is False
    # ...but a non-finite loss always does
    assert DivergenceStop()(math.inf) is True and DivergenceStop()(math.nan) is True


def test_every_registered_experiment_has_a_defaults_row_with_both_presets() -> None:
    for name in EXPERIMENTS:
        assert name in DEFAULTS, name
        for key, pair in DEFAULTS[name].items():
            assert len(pair) == len(PRESETS), (name, key)
    assert default("clr", "step_epochs", "homework") == 2.0
    assert default("clr", "step_epochs", "quick", 0.5) == 0.5  # a given value wins
    assert default("ood", "model", "quick") is None  # ood compares its own models
