"""The zoo through the pytest plugin, once per configured dtype and device (the tox matrix runs this).

pytest tests/normcheck/test_zoo_matrix.py --normcheck-dtype float16    # tox -e fp16
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from .zoo import BUGGY, CORRECT, FLOAT64_CAPABLE

MATRIX_BUGS = [b for b in BUGGY if b[3] not in ("mutation", "nondeterminism")]


@pytest.mark.normcheck
@pytest.mark.parametrize("spec, kind, offset", CORRECT, ids=[c[0].split(":")[-1] for c in CORRECT])
def test_correct_implementation(normcheck, spec, kind, offset):
    if "float64" in normcheck.dtypes and spec not in FLOAT64_CAPABLE:
        pytest.skip(f"{spec} computes in float32 (x.float()): not a float64 implementation")
    normcheck.audit(spec, kind=kind, weight_offset=offset, examples=10)


@pytest.mark.normcheck(dtypes=["float16"])
@pytest.mark.parametrize("spec, kind, offset, bug", MATRIX_BUGS[:3], ids=[b[0].split(":")[-1] for b in MATRIX_BUGS[:3]])
def test_buggy_implementation_fails_the_test(normcheck, spec, kind, offset, bug):
    with pytest.raises(pytest.fail.Exception, match=bug):
        normcheck.audit(spec, kind=kind, weight_offset=offset, examples=10)
