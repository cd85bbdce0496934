from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from oracles import BFLOAT16, FLOAT16, FLOAT32, FLOAT64, FORMATS, resolve_format


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_each_format_matches_its_numpy_dtype(fmt):
    info = ml_dtypes.finfo(fmt.dtype) if fmt is BFLOAT16 else np.finfo(fmt.dtype)
    assert fmt.max_finite == Fraction(float(info.max))
    assert Fraction(2) ** fmt.emin == Fraction(float(info.smallest_normal))
    assert fmt.precision == info.nmant + 1


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("float16", FLOAT16),
        ("bf16", BFLOAT16),
        (np.float32, FLOAT32),
        (np.dtype("float64"), FLOAT64),
        (ml_dtypes.bfloat16, BFLOAT16),
        ("double", FLOAT64),
    ],
)
def test_formats_resolve_from_names_aliases_and_dtypes(spec, expected):
    assert resolve_format(spec) is expected


@pytest.mark.parametrize("spec", ["float8", np.int32, 3, None])
def test_unknown_formats_are_refused_with_the_list_of_valid_ones(spec):
    with pytest.raises(ValueError, match="use one of float16, bfloat16, float32, float64"):
        resolve_format(spec)
