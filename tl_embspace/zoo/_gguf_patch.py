"""A scoped speed-up for reading GGUF files through transformers.

Why it exists: while loading a GGUF checkpoint, transformers rebuilds ``gguf.get_tensor_name_map``
(a pure function of its arguments) once per module of the model, ~400 times for SmolLM2, which is
a third of the load time (~4 s of ~12 s). Memoising it changes no result. transformers looks the
function up on the ``gguf`` module at call time, so replacing the module attribute is enough; the
original is put back when the load is done, so nothing outside the load sees the patch.
"""

import contextlib
import functools
from collections.abc import Iterator


@contextlib.contextmanager
def memoised_gguf_name_map() -> Iterator[None]:
    """Memoise ``gguf.get_tensor_name_map`` inside the ``with`` block, then restore it."""
    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.cache(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original
