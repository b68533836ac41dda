"""The address-space limit (`ulimit -v`) the process runs under, and how messages name it."""

import resource


def address_space_limit() -> int | None:
    """The soft address-space limit in bytes, or None when there is none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def limit_words() -> str:
    """'the memory limit (ulimit -v) of N MiB', without the value when there is none."""
    limit = address_space_limit()
    return "the memory limit (ulimit -v)" + (f" of {limit // 2**20} MiB" if limit is not None else "")
