"""Pure-integer runtime: numpy reference and C library binding (docs/runtime.md)."""
