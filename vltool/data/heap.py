"""Returning freed heap memory to the OS before DataLoader workers fork (#23)."""

from __future__ import annotations

import functools


def release_free_memory() -> None:
    """Give the heap's freed pages back to the OS before worker processes are forked (#23).

    Setup work that scales with the data (tokenising every caption for the word converter, the
    image check, building the index) frees its temporaries, but glibc's allocator keeps the pages;
    a worker forked then starts with all of them mapped, and the memory counted per process grows
    with the dataset. ``malloc_trim`` returns them; elsewhere (musl, macOS, Windows) this does nothing.
    """
    import gc

    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim`` from the running process's own symbols, or None."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # no dlopen(NULL) (Windows)
        return None
