"""Scale-out on torch.distributed: rank, shard, merge (no cluster code of rsrouter's own).

Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank runs the same command: :func:`setup` joins the
process group (nccl for GPU tensors, gloo for CPU ones) and picks this rank's device. A long loop
over inputs takes its rank's shard (every ``world``-th group of the inputs still to do, batched
as one process batches it), appends to its own part file ``OUT.partRofW`` (resumable like any
results file), and rank 0 merges the parts into ``OUT`` after a barrier: the merged file holds
the rows one process would write, because every noise draw is seeded by (seed, input index,
stage) (on GPUs, as long as a sample's prediction does not depend on its batch's kernels). A
rank killed mid-run loses nothing: rerun the same command and each shard resumes from its part;
parts of a run with another world size are merged too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

TIMEOUT_HOURS = float(os.environ.get("RSROUTER_DIST_TIMEOUT_HOURS", "72"))


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world`` (1 process: 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence) -> list:
        """Every ``world``-th item from ``rank`` on: a deterministic split, balanced by order."""
        return list(items[self.rank::self.world])

    def part(self, path: str | os.PathLike) -> Path:
        """This rank's part file of ``path``."""
        path = Path(path)
        return path.with_name(f"{path.name}.part{self.rank}of{self.world}")

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Dist()
_CURRENT = SINGLE


def current() -> Dist:
    """The :class:`Dist` of this process (set by :func:`setup`)."""
    return _CURRENT


def parts_of(path: str | os.PathLike) -> list[Path]:
    """Every part file of ``path`` on disk, whatever world size wrote it."""
    path = Path(path)
    return sorted(p for p in path.parent.glob(f"{path.name}.part*of*")
                  if p.name[len(path.name) + 5:].replace("of", "", 1).isdigit())


def setup(device: str | None = None) -> tuple[Dist, str]:
    """Join torchrun's process group if there is one; returns ``(dist, device)``.

    ``device``: ``auto`` / None (cuda when there is one, else cpu), ``cpu``, ``cuda``,
    ``cuda:N`` or ``mps``; the returned device is never ``auto``. Under torchrun with CUDA, each
    rank takes the GPU of its ``LOCAL_RANK`` (one process per GPU; ``cuda:N`` is refused) and
    nccl for GPU tensors (gloo for CPU tensors); on CPU, gloo. Raises ``ValueError`` for a
    device torchrun cannot share out (``cuda:N``, ``mps``).
    """
    global _CURRENT
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world <= 1:
        return SINGLE, device
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if ":" in device:
            raise ValueError(f"--device {device} under torchrun would put every rank on one GPU; "
                             "pass --device cuda (each rank takes the GPU of its LOCAL_RANK) and "
                             "choose GPUs with CUDA_VISIBLE_DEVICES")
        name = f"cuda:{local}"
        torch.cuda.set_device(torch.device(name))
        backend = "cpu:gloo,cuda:nccl"  # nccl for GPU tensors, gloo for CPU ones (counts)
    elif device == "cpu":
        name, backend = "cpu", "gloo"
    else:
        raise ValueError(f"--device {device} is not supported under torchrun; use cuda or cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(hours=TIMEOUT_HOURS))
    _CURRENT = Dist(rank, world, local)
    return _CURRENT, name


def teardown() -> None:
    """Leave the process group (at the end of a command)."""
    global _CURRENT
    if _CURRENT.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _CURRENT = SINGLE
