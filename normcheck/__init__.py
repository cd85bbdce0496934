"""normcheck: verify RMSNorm and LayerNorm implementations against exact oracles.

The exact mathematics lives in the separate ``oracles`` package (numpy, mpmath
and ml_dtypes only); this package drives implementations against it.
"""

__version__ = "0.1.0"
