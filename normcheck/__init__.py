"""normcheck: verify RMSNorm and LayerNorm implementations against exact oracles.

The exact mathematics lives in the separate ``oracles`` package (numpy, mpmath
and ml_dtypes only); this package drives implementations against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from normcheck.options import AuditOptions

__version__ = "0.1.0"


def assert_matches_oracle(impl: object, options: AuditOptions | None = None, **keywords: object) -> object:
    """Audit ``impl`` against the exact oracle; raise ``AssertionError`` explaining any finding.

    Options as :func:`normcheck.api.audit` (an ``AuditOptions``, or keywords ``kind``, ``dtype``, ``device``, ``eps``,
    ``weight_offset``, ``examples``, ``seed``, ``grad``, ...). Returns the result.
    """
    __tracebackhide__ = True
    from normcheck.api import assert_matches_oracle as check

    return check(impl, options, **keywords)
