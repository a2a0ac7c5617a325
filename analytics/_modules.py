"""nn.Modules for the builder's branches (imported only by ``Net.to_module()``)."""

from __future__ import annotations

import torch
from torch import nn


class ConcatModule(nn.Module):
    """Run each branch on the same input and concatenate the outputs along channels."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class AddModule(nn.Module):
    """Run each branch on the same input and sum the outputs (a residual with nn.Identity)."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for b in self.branches[1:]:
            out = out + b(x)
        return out
