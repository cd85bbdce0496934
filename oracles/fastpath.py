"""Float64 arithmetic with proven error bounds: the fast path of every oracle.

Error analysis follows Higham, *Accuracy and Stability of Numerical Algorithms*:
``fl(a op b) = (a op b)(1 + d)`` with ``|d| <= u = 2**-53`` while no intermediate
underflows or overflows (``NormInputs.fast_rows`` guarantees this), and products
of ``k`` such factors stay within ``gamma(k) = k*u / (1 - k*u)``.
"""

from __future__ import annotations

import numpy as np

U = 2.0**-53
#: Final widening of every bound, covering the rounding of the bound arithmetic itself.
SAFETY = 1 + 2.0**-10


def gamma(k: int) -> float:
    """Higham's ``gamma_k``: bound on ``|prod (1 + d_i)^(+-1) - 1|`` over ``k`` roundings."""
    return k * U / (1 - k * U)


def compose(*rel: float) -> float:
    """Relative bound of a product of factors with relative errors ``rel``."""
    out = 1.0
    for r in rel:
        out *= 1 + r
    return out - 1


_CHUNK = 16


def pairwise_sum(a: np.ndarray, axis: int = -1) -> tuple[np.ndarray, int]:
    """Sum along ``axis`` in a fixed pairwise order; also return the order's depth.

    Every term passes through at most ``depth`` additions, so the result errs by
    at most ``gamma(depth) * sum(|a|)``.
    """
    if axis != -1:
        a = np.moveaxis(a, axis, -1)
    m = a.shape[-1]
    if m == 0:
        return np.zeros(a.shape[:-1]), 0
    depth = 0
    if m >= 2 * _CHUNK:
        # First level: _CHUNK strided slices added elementwise (at most _CHUNK - 1 additions each).
        head = (m // _CHUNK) * _CHUNK
        chunks = a[..., :head].reshape(*a.shape[:-1], _CHUNK, head // _CHUNK).sum(axis=-2)
        a = np.concatenate([chunks, a[..., head:]], axis=-1) if head < m else chunks
        depth = _CHUNK - 1
    while a.shape[-1] > 1:
        m = a.shape[-1]
        h = m // 2
        s = a[..., :h] + a[..., h : 2 * h]
        if m % 2:
            s[..., 0] += a[..., -1]
            depth += 1
        a = s
        depth += 1
    return a[..., 0].copy(), depth


#: Elements per block: temporaries stay in cache and are reused instead of page-faulted.
BLOCK_ELEMENTS = 1 << 14


def row_blocks(rows: int, n: int) -> list[slice]:
    """Consecutive row slices of about ``BLOCK_ELEMENTS`` elements each."""
    step = max(1, BLOCK_ELEMENTS // n)
    return [slice(s, min(s + step, rows)) for s in range(0, rows, step)]


def flat_blocks(size: int) -> list[slice]:
    """Consecutive slices of a flat array, ``BLOCK_ELEMENTS`` each."""
    return [slice(s, min(s + BLOCK_ELEMENTS, size)) for s in range(0, size, BLOCK_ELEMENTS)]


class ColumnSum:
    """Pairwise column sums over row blocks, with the depth of the whole order.

    Feed each block's terms with :meth:`add`; :attr:`total` and :attr:`abs_total`
    are the sums of the terms and of their magnitudes over every row, and every
    term went through at most :attr:`depth` additions.
    """

    def __init__(self) -> None:
        self._sums: list[np.ndarray] = []
        self._abs: list[np.ndarray] = []
        self._depth = 0

    def add(self, terms: np.ndarray) -> None:
        s, depth = pairwise_sum(terms, axis=0)
        self._sums.append(s)
        self._abs.append(pairwise_sum(np.abs(terms), axis=0)[0])
        self._depth = max(self._depth, depth)

    def result(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(total, abs_total, depth)``."""
        total, d = pairwise_sum(np.stack(self._sums), axis=0)
        abs_total, _ = pairwise_sum(np.stack(self._abs), axis=0)
        return total, abs_total, self._depth + d
