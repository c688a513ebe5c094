"""The C allocator's settings for the parent process, which reads every byte of output.

Output crosses hostbatch in blocks of 32 KiB to a few hundred KiB: paramiko's reads, the lines
a worker cuts, a batch of events pickled for the parent and read back. glibc's ``malloc``
starts with two thresholds of 128 KiB: larger blocks get a fresh ``mmap`` each time, and once
128 KiB lie free at the top of a heap they go back to the kernel. Either way the next block is
fresh memory, and touching fresh memory is a page fault per 4 KiB. On an output-heavy run that
churn was half of all page faults (100 hosts x 1 MB: ~70,000, where the plain driver of
bench/plain_ssh.py took ~45,000), and on a virtual machine a page fault is dear.

Fixed thresholds keep such blocks in the heap for reuse. Only the parent sets them, and only
when it is the command line (cli/execute.py): the allocator is process-wide, so a program
using hostbatch as a library keeps its own settings unless it calls this itself. The parent has
one heap, and what it keeps is what the last message just used. A worker's threads each get
a heap of their own (up to 8 per core), and keeping 4 MiB in each raised the workers' peak
by 2-5 MB at 500 hosts (the 150 MB bound of issue 10 was then missed), so workers keep
glibc's defaults. Where the C library is not glibc (``mallopt`` missing) nothing changes;
only speed depends on it.
"""

from __future__ import annotations

import contextlib
import ctypes

#: Blocks up to this size come from the heap, not from a mapping of their own.
MMAP_THRESHOLD = 1024 * 1024
#: Free memory at the top of a heap kept for reuse rather than given back.
TRIM_THRESHOLD = 4 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def keep_output_blocks() -> bool:
    """Set this process's allocator thresholds (above); whether the C library took them."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        mallopt = ctypes.CDLL(None).mallopt
        return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) \
            and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return False
