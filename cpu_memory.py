"""How the C allocator treats the large blocks that every optimization step frees (glibc, Linux).

PyTorch takes CPU tensor memory from the C library's ``malloc``. glibc serves every request above
its mmap threshold (which adapts, but never beyond 32 MiB) with a fresh ``mmap`` and gives it back
with ``munmap`` on ``free``. A projection step allocates and frees the same large activations in
every step: one 128-channel map at 256x256 is 32 MiB plus a few bytes, a 32-channel map at
1024x1024 128 MiB. With the default settings each of them is mapped anew and every one of its
pages faults in again, in every step; on the project's 2-core AVX2 virtual machine a generator
forward + backward at 1024x1024 spent about 10 s a step in the kernel (``benchmarks/step_time.py
--allocator keep,system`` measures it).

``keep_freed_memory`` switches glibc to serve large blocks from its heap too and to keep freed
heap memory for the next request instead of returning it to the operating system. The process's
resident memory then stays at its peak rather than falling between steps, and the peak grows
(aligned blocks of the heap fit each other's holes imperfectly). On that machine (2026-12-06, fp32)
a whole step at 1024x1024 took 6.7 s instead of 10.0 and peaked at 4.3 GiB instead of 3.4; at
256x256 it peaked at 2.6 GiB instead of 2.4. Every command calls it once at start
(``cli_common.run``); ``LANDMARK_PROJECTION_ALLOCATOR=system`` in the environment keeps glibc's
default. On other C libraries and systems it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys
from typing import Optional

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# mallopt takes an int: the largest free top-of-heap span it keeps is 2 GiB - 1.
KEEP_BYTES = 2 ** 31 - 1

ENV = 'LANDMARK_PROJECTION_ALLOCATOR'   # 'system' keeps glibc's default
KEPT = 'freed memory kept'        # what status() says once keep_freed_memory is in effect
SYSTEM = 'system default'

_state: Optional[bool] = None


def _glibc():
    if not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc':
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        return libc if hasattr(libc, 'mallopt') else None
    except OSError:
        return None


def _setting() -> str:
    """``ENV``'s value, ``keep`` (the default) or ``system``; another value warns and means ``keep``."""
    value = os.environ.get(ENV, '').strip().lower() or 'keep'
    if value not in ('keep', 'system'):
        print(f'warning: {ENV}={os.environ[ENV]!r} is neither keep nor system: freed memory is kept',
              file=sys.stderr)
        value = 'keep'
    return value


def keep_freed_memory() -> bool:
    """Keep freed large blocks in the process for reuse (glibc only). Idempotent.

    Returns True when the setting is in effect (glibc accepted both ``mallopt`` calls), False
    elsewhere or when ``LANDMARK_PROJECTION_ALLOCATOR=system`` (``keep``, the default, or unset
    keeps; another value warns on stderr and keeps). Affects the whole process, and
    only blocks allocated after the call.
    """
    global _state
    if _state is None:
        libc = _glibc() if _setting() == 'keep' else None
        _state = bool(libc is not None
                      and libc.mallopt(M_MMAP_MAX, 0) == 1            # large blocks from the heap, not mmap
                      and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1)  # freed heap memory stays
    return _state


def status() -> str:
    """What ``report.json``'s environment records: ``KEPT`` or ``SYSTEM``."""
    return KEPT if _state else SYSTEM
