"""Pure-integer runtime: numpy reference and C library binding (see issue 4)."""
