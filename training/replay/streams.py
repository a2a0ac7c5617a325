"""Each learner's own seeded stream of mini-batches.

Learner ``i``'s ``j``-th gradient (``seq = j``, counting from 1) is computed on the ``j``-th
mini-batch of learner ``i``'s stream, whatever the protocol did with its other gradients:
a lost or cancelled gradient still used up its batch. A stream walks through the training
set epoch by epoch, each epoch a fresh permutation drawn with
``torch.randperm(n, generator=g)``, exactly as :class:`dlsys.training.data.Batches` does,
and cuts it into ``n // batch`` full batches (the remainder of an epoch is not used, so every
gradient sees exactly ``batch`` samples).

Seeds: learner 0's generator is seeded as :func:`dlsys.training.train` seeds its batch order
for the same ``seed``, so a one-learner replay sees the batches that ``dlsys train`` sees
(when ``batch`` divides the training-set size); learner ``i >= 1`` uses the child
``SeedSequence(entropy=that seed, spawn_key=(i,))``, so adding a learner does not change the
others' batches.
"""

from __future__ import annotations

import numpy as np
import torch

from dlsys.common.errors import check_int
from dlsys.training.loop import _seeds

__all__ = ["SampleStreams", "learner_seed"]


def learner_seed(seed: int, learner: int) -> int:
    """The ``torch.Generator`` seed of learner ``learner``'s sample stream (see module doc)."""
    check_int("seed", seed, minimum=0)
    check_int("learner", learner, minimum=0)
    base = _seeds(seed)[1]
    if learner == 0:
        return base
    ss = np.random.SeedSequence(entropy=base, spawn_key=(learner,))
    return int(ss.generate_state(1, np.uint64)[0])


class SampleStreams:
    """Mini-batch indices for every learner: :meth:`indices` ``(learner, seq)``.

    ``n``: training-set size (samples); ``batch``: samples per gradient (1 <= batch <= n).
    Requests in increasing ``seq`` per learner draw each epoch's permutation once; an
    earlier ``seq`` redraws that learner's stream from its start (still exact, only slower).
    """

    def __init__(self, n: int, batch: int, seed: int, device: torch.device | str = "cpu") -> None:
        self.n = check_int("training set size", n, minimum=1)
        self.batch = check_int("per_learner_batch", batch, minimum=1)
        if batch > n:
            raise ValueError(
                f"per_learner_batch: must be <= the training set size ({n}), got {batch}"
            )
        self.seed = check_int("seed", seed, minimum=0)
        self.device = torch.device(device)
        self.per_epoch = n // batch
        # learner -> (generator, epoch index of perm, perm on the device)
        self._state: dict[int, tuple[torch.Generator, int, torch.Tensor]] = {}

    def _perm(self, learner: int, epoch: int) -> torch.Tensor:
        st = self._state.get(learner)
        if st is None or st[1] > epoch:
            gen = torch.Generator().manual_seed(learner_seed(self.seed, learner))
            st = (gen, -1, torch.empty(0, dtype=torch.int64))
        gen, e, perm = st
        while e < epoch:
            perm = torch.randperm(self.n, generator=gen).to(self.device)
            e += 1
        self._state[learner] = (gen, e, perm)
        return perm

    def indices(self, learner: int, seq: int) -> torch.Tensor:
        """Training-set indices (int64, ``batch`` of them) of learner ``learner``'s ``seq``-th
        mini-batch (``seq`` from 1)."""
        epoch, pos = divmod(int(seq) - 1, self.per_epoch)
        if epoch < 0:
            raise ValueError(f"seq: must be >= 1, got {seq}")
        start = pos * self.batch
        return self._perm(int(learner), epoch)[start : start + self.batch]
