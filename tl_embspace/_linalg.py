"""Small dense factorisations (SVD, QR, eigh, pinv) run single-threaded.

MKL's multi-threaded LAPACK routines are pathologically slow on small matrices on some machines
(measured here, 2 cores: the SVD of a 576 x 1536 float64 matrix took 14 s with 2 threads and
0.26 s with one; eigh of 576 x 576 took 8.4 s vs 0.07 s). Our factorisations are all small
(d_model-sized), so one thread is always fast enough; matrix products keep every thread.
"""

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (None: unchanged), then restore them."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded() -> contextlib.AbstractContextManager[None]:
    """Run the block with one intra-op thread, restoring the caller's setting afterwards."""
    return torch_threads(1)
