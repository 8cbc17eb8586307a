"""Data-parallel PPO: what ragtune's PPO ranks exchange under `accelerate launch` (torch.distributed, gloo or NCCL).

Each rank rolls out its own slice of the global batch; they agree on everything that makes them one run:
the starting weights (broadcast from rank 0), the score and advantage statistics (whitened over the global
batch), the KL and logged means, and every gradient (averaged before clipping, as DDP does), so all ranks
take identical optimizer steps. With one process every function here is the identity.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class Ranks:
    """This process's place in the process group (rank 0 of 1 when torch.distributed is not initialised)."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self.on = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """`t` summed over the ranks (a new tensor)."""
        out = t.detach().clone()
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(out)
        return out

    def mean(self, values: list[float]) -> list[float]:
        """Each value averaged over the ranks."""
        return (self.sum(torch.tensor(values, dtype=torch.float64)) / self.world).tolist()

    def broadcast(self, params: Iterable[torch.Tensor]) -> None:
        """Copy rank 0's values into every rank's tensors (in place)."""
        if self.world > 1:
            import torch.distributed as dist

            for p in params:
                dist.broadcast(p.data, src=0)

    def average_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each gradient with its mean over the ranks (one flat all-reduce); a missing gradient counts 0."""
        if self.world == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = self.sum(torch.cat([p.grad.reshape(-1) for p in params])) / self.world
        start = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[start:start + n].view_as(p.grad))
            start += n

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def global_moments(x: torch.Tensor, mask: torch.Tensor | None, ranks: Ranks
                   ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mean, population variance, count) of the (masked) entries of every rank's `x`.

    >>> mean, var, n = global_moments(torch.tensor([1.0, 3.0, 8.0]), torch.tensor([1.0, 1.0, 0.0]), Ranks())
    >>> float(mean), float(var), n
    (2.0, 1.0, 2.0)
    """
    m = torch.ones_like(x) if mask is None else mask
    s = ranks.sum(torch.stack([(x * m).sum(), (x * x * m).sum(), m.sum()]).double())
    n = s[2].clamp(min=1)
    mean = s[0] / n
    var = (s[1] / n - mean * mean).clamp(min=0)
    return mean.to(x.dtype), var.to(x.dtype), float(s[2])
