"""The address-space limit (`ulimit -v`) the process runs under: below it the libraries
fail in ways that need saying (the floor check, the watcher process, a worker's death)."""

import resource


def address_space_limit() -> int | None:
    """The soft address-space limit in bytes, or None when there is none."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft
