"""What became of an implementation in a scan, and why one was not audited (classed for the counts)."""

from __future__ import annotations

AUDITED, NOT_AUDITED, ERROR = "audited", "not audited", "error"

CONSTRUCTOR = "its constructor"
CALL = "its call (it needs other inputs, or raised)"
SHAPE = "its output's shape"
NOT_A_NORM = "not an RMSNorm or LayerNorm"
#: Why an implementation was not audited, from normcheck's own message (the first text it contains).
REASONS = (
    ("cannot construct", CONSTRUCTOR),
    (", not a torch.nn.Module", CONSTRUCTOR),
    ("differs from the input shape", SHAPE),
    ("cannot probe", CALL),
    ("matches neither", NOT_A_NORM),
    ("cannot find the eps", "no eps normcheck can find"),
    ("not defined on import", "not defined on import"),
)
OTHER_REASON = "other"
#: The reasons a norm over another dimension (channels first) gives when called on rows: a scan tries those
#: layouts next.
OTHER_LAYOUT = (CALL, SHAPE, NOT_A_NORM)


def reason_class(reason: str | None) -> str:
    """The class of a "not audited" reason (README's counts)."""
    for text, name in REASONS:
        if text in (reason or ""):
            return name
    return OTHER_REASON
