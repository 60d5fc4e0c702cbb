"""Scale-out under torchrun (WORLD_SIZE > 1): which process this is, and the few collective steps
the loop needs. One process (no torchrun) is `Dist()`, for which each of them does nothing.

Every rank draws the same global batch from the seeded shuffle and trains on its slice of it
(DistributedDataParallel averages the gradients); rank 0 logs, evaluates and writes checkpoints.
gloo on CPU, nccl on CUDA.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, model, device):
        """The module the loop trains through: `model` itself, or DDP around it."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.local_rank]
                                       if device.type == "cuda" else None)

    def mean(self, value: float, device) -> float:
        """The mean of `value` over the ranks."""
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor[0]) / self.world

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def setup_dist(device_kind: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
