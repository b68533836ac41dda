"""The address-space limit (`ulimit -v`) the process runs under: below it the libraries
fail in ways that need saying (the floor check at start, a worker's death)."""

import resource


def address_space_limit() -> int | None:
    """The soft address-space limit in bytes, or None when there is none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def limit_words() -> str:
    """How every message names the limit: 'the memory limit (ulimit -v) of N MiB' (or
    without the value when there is none: the system ran out of memory itself)."""
    limit = address_space_limit()
    return "the memory limit (ulimit -v)" + (f" of {limit // 2**20} MiB" if limit is not None else "")
