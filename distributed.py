"""Running one command on many processes with ``torchrun``: ranks, devices and the merged result.

Under ``torchrun --nproc_per_node=N`` (and ``--nnodes`` across machines) every process gets
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment. ``setup`` reads them, joins the
process group (``nccl`` on CUDA, ``gloo`` on the CPU) and picks the process's device (its own
GPU, ``cuda:LOCAL_RANK``, or the CPU). Without torchrun it returns a one-process context and
changes nothing. Results are merged over a ``gloo`` group (Python objects), whatever the
device backend.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, List, Optional

import torch


@dataclass
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None   # None: a single process, no process group
    _object_group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get('WORLD_SIZE', '1')) > 1


def setup(device: Optional[str] = None, timeout_minutes: float = 60.0) -> tuple:
    """``(Context, torch.device)`` for this process.

    ``device`` is the user's ``--device`` (``None``: CUDA when present). Under torchrun a CUDA
    device becomes ``cuda:LOCAL_RANK``.
    """
    if not launched_by_torchrun():
        return Context(), None
    import torch.distributed as dist
    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    wants_cuda = (device or ('cuda' if torch.cuda.is_available() else 'cpu')).startswith('cuda')
    if wants_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device('cuda', local_rank)
        backend = 'nccl'
    else:
        dev = torch.device('cpu')
        backend = 'gloo'
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timeout)
    group = dist.new_group(backend='gloo', timeout=timeout) if backend != 'gloo' else None
    return Context(rank=rank, world_size=world, local_rank=local_rank, backend=backend, _object_group=group), dev


def gather(ctx: Context, obj: Any) -> Optional[List[Any]]:
    """Every rank's ``obj`` as a list on rank 0 (in rank order); ``None`` on the other ranks."""
    if not ctx.distributed:
        return [obj]
    import torch.distributed as dist
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0, group=ctx._object_group)
    return out


def barrier(ctx: Context) -> None:
    """Wait until every rank gets here (nothing to wait for without torchrun)."""
    if ctx.distributed:
        import torch.distributed as dist
        dist.barrier(group=ctx._object_group)


def teardown(ctx: Context) -> None:
    if ctx.distributed:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()
