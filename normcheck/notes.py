"""Sentences about an audit result that the terminal, the reports and the assertion message share."""

from __future__ import annotations


def partial_block_lines(partial: dict[str, str]) -> list[str]:
    """One line per way a quantized norm answered a hidden size that is not a multiple of its block
    (``AuditResult.partial_blocks``: per dtype), with the dtypes that answered so."""
    return [
        f"{', '.join(d for d, h in partial.items() if h == how)}: a hidden size that is not a multiple of the "
        f"block: {how}"
        for how in dict.fromkeys(partial.values())
    ]


def too_slow_lines(entries: list[dict]) -> list[str]:
    """One line per dtype and shape of the inputs not run because they were predicted to take longer than
    the timeout (``AuditResult.too_slow``)."""
    groups: dict[tuple[str, str], list[float]] = {}
    for e in entries:
        groups.setdefault((e["dtype"], "x".join(map(str, e["shape"]))), []).append(e["predicted_s"])
    return [
        f"{dtype}: {shape} not run: too slow at this size (predicted {max(p):.3g} s)"
        + (f", {len(p)} inputs" if len(p) > 1 else "")
        for (dtype, shape), p in groups.items()
    ]


def smallest_input_note(minimal: dict | None) -> str | None:
    """The line that puts a finding's smallest failing input (its reproducer's) beside the worst case."""
    if not minimal:
        return None
    shape = "x".join(map(str, minimal["shape"]))
    return f"smallest failing input ({shape}, {minimal['regime']} rows, the reproducer's): {minimal['message']}"
