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


# How long a rank that has finished its rows waits for the others at the merge. The ranks meet only
# there, and one rank's rows may take hours longer than another's (a CPU run at 1024x1024, a rank
# whose rows all failed at once): the wait must not end the run. A rank that dies is torchrun's to
# notice, which stops the others.
WAIT_FOR_OTHER_RANKS = datetime.timedelta(days=30)


def setup(device: Optional[str] = None, timeout: datetime.timedelta = WAIT_FOR_OTHER_RANKS) -> tuple:
    """``(Context, torch.device)`` for this process.

    ``device`` is the user's ``--device`` (``None``: CUDA when present), already checked
    (``cli_common.pick_device``). Under torchrun a CUDA device becomes ``cuda:LOCAL_RANK``;
    naming one GPU (``cuda:1``), or more processes on a machine than it has GPUs, is a
    ``UserError``.
    """
    if not launched_by_torchrun():
        return Context(), None
    import torch.distributed as dist
    from dnnlib.util import UserError
    rank, world = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    requested = torch.device(device) if device else torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    wants_cuda = requested.type == 'cuda'
    if wants_cuda:
        if requested.index is not None:
            raise UserError(f'--device {device}: under torchrun each process uses its own GPU '
                            f'(cuda:LOCAL_RANK); pass --device cuda')
        if local_rank >= torch.cuda.device_count():
            raise UserError(f'this process has LOCAL_RANK {local_rank} but the machine has '
                            f'{torch.cuda.device_count()} GPU(s): start at most that many processes per machine '
                            f'(--nproc_per_node), or pass --device cpu')
        torch.cuda.set_device(local_rank)
        dev = torch.device('cuda', local_rank)
        backend = 'nccl'
    else:
        dev = torch.device('cpu')
        backend = 'gloo'
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
