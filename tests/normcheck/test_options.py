"""The audit's options, defined once (normcheck.options): the command line's defaults are the options',
and the API checks values as the command line does."""

from __future__ import annotations

import pickle

import pytest

from normcheck.cli import _options, _parser
from normcheck.errors import UsageError
from normcheck.options import DEFAULTS, AuditOptions


def test_the_command_line_defaults_are_the_options_defaults():
    args = _parser().parse_args(["audit", "torch.nn.RMSNorm"])
    assert _options(args) == DEFAULTS


def test_flags_reach_the_options():
    argv = ["audit", "m.N", "--dtype", "float32", "--dtype", "float16", "--dtype", "float32", "--eps", "0.01"]
    argv += ["--shape", "4x8", "--residual", "--style", "return", "--compile", "--no-grad", "--timeout", "3"]
    options = _options(_parser().parse_args(argv))
    assert options.dtypes == ("float32", "float16") and options.eps == 0.01 and options.shapes == ((4, 8),)
    assert options.fused == "return" and options.compile == "inductor" and not options.grad and options.timeout == 3


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"eps": float("nan")}, "eps must be a finite number >= 0"),
        ({"dtype": "float8"}, "dtype must be one of float16, bfloat16, float32, float64"),
        ({"kind": "batchnorm"}, "kind must be one of rmsnorm, layernorm"),
        ({"weight_offset": 2}, "weight offset must be one of 0, 1"),
        ({"style": "inplace"}, "add --residual"),
        ({"shapes": ((8,),)}, "shapes are ROWS x HIDDEN"),
        ({"timeout": -1.0}, "timeout must be a finite number of seconds >= 0"),
        ({"nope": 1}, "unknown audit option(s) nope"),
    ],
)
def test_bad_values_are_usage_errors_from_the_api_too(keywords, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DEFAULTS.updated(**keywords)


def test_the_worker_gets_the_options_without_a_time_limit():
    options = AuditOptions(dtype="bfloat16", framework="numpy", timeout=5.0)
    sent = pickle.loads(pickle.dumps(options.in_worker()))
    assert sent.timeout == 0 and sent.dtypes == ("bfloat16",) and sent.framework == "numpy"
