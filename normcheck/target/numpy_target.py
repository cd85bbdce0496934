"""Plain functions of numpy arrays (``--framework numpy``).

The function is called as ``fn(x, weight=w, bias=b, eps=e)`` with numpy arrays
(bfloat16 as ``ml_dtypes.bfloat16``), passing only the names it takes, as for a
torch function. It is audited forward-only unless it takes ``grad_output``: then
it is called once with ``grad_output=g`` too and returns the gradients by this
protocol, a mapping ``{"y": y, "dx": dx, "dw": dw, "db": db}`` (``dw`` where it
takes a weight, ``db`` where it takes a bias).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

from normcheck.errors import UsageError
from normcheck.options import DEFAULTS, AuditOptions
from normcheck.target.arrays import ArrayCandidate, Built, Forward

#: The parameter through which a numpy function offers gradients.
GRAD_PARAMETER = "grad_output"


class NumpyCandidate(ArrayCandidate):
    """A plain function of numpy arrays, run in this process, on the CPU."""

    framework = "numpy"
    array_name = "numpy array"

    def __init__(self, target: object, name: str, options: AuditOptions = DEFAULTS) -> None:
        super().__init__(target, name, options)
        if self.device != "cpu":
            raise UsageError(f"--framework numpy runs on the CPU, not on {self.device!r}")
        if self.compile is not None:
            raise UsageError("--compile applies to torch and JAX targets, not to numpy functions")
        if inspect.isclass(target):
            raise UsageError(f"{name} is a class: --framework numpy audits plain functions of numpy arrays")
        self._function()
        self.supports_grad = GRAD_PARAMETER in self._fn_params

    def _build(self, n: int, dtype: str) -> Built:
        def call(x: object, params: dict[str, object], grad: np.ndarray | None) -> Forward:
            if grad is None:
                return self._call_function(n, x, params), None
            result = self._call_function(n, x, params, **{GRAD_PARAMETER: grad})
            if not isinstance(result, Mapping):
                return result, _not_a_mapping(result)
            return result.get("y"), lambda: {
                "x": result.get("dx"),
                "weight": result.get("dw"),
                "bias": result.get("db"),
            }

        return Built(call, self._function_layout(dtype))

    def _array(self, a: np.ndarray) -> object:
        return np.array(a, copy=True)

    def _is_array(self, y: object) -> bool:
        return isinstance(y, np.ndarray)


def _not_a_mapping(result: object):
    def pullback() -> dict[str, object]:
        raise TypeError(
            f"called with {GRAD_PARAMETER}=..., it returned a {type(result).__name__}, "
            'not a mapping {"y": y, "dx": dx, "dw": dw, "db": db}'
        )

    return pullback
