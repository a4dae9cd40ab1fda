"""direct-edge: DIRECT posteriors trained on the host and run in pure integer arithmetic.

The product is three subpackages with one-way imports (trainer -> model file <- export -> runtime):
:mod:`direct_edge.trainer`, :mod:`direct_edge.export` and :mod:`direct_edge.runtime`.  This package
itself holds only what all three share (the version, the user-error base class, the atomic file
writer and the command-line runner) and imports nothing heavy, so ``import direct_edge.runtime``
stays light.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
