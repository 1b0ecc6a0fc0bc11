"""This process's place in a run: one process, or one of a ``torchrun`` group.

``torchrun --nproc_per_node N -m sortsight train ...`` starts N processes; ``accelerate`` picks up
the gloo process group. Each process takes its shard of every epoch, DDP averages the gradients,
BatchNorm buffers are broadcast from rank 0, stop decisions are agreed by all-reduce, and only
the main process writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sortsight.training.precision import cpu_capability, set_threads

__all__ = ["Environment", "setup_environment"]


@dataclass
class Environment:
    """One process, or one of a ``torchrun`` group."""

    accelerator: Any
    world: int
    rank: int
    is_main: bool
    cpu: str
    threads: int

    def wait(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``module`` when there are several processes."""
        return self.accelerator.prepare_model(module) if self.world > 1 else module  # type: ignore[no-any-return]

    def agree(self, flag: bool) -> bool:
        """True on every process when it is true on any (so all stop at the same step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def sync_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm statistics) to every process."""
        if self.world > 1:
            for buf in module.buffers():
                torch.distributed.broadcast(buf, src=0)


def setup_environment() -> Environment:
    """Threads sized to the cores; ``accelerate`` picks up a ``torchrun`` process group if any
    (imported only then: a single process does not pay for it)."""
    threads = set_threads()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return Environment(None, 1, 0, True, cpu_capability(), threads)
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    return Environment(
        acc, acc.num_processes, acc.process_index, acc.is_main_process, cpu_capability(), threads
    )
