"""An audit's options, defined once: the command line, the Python API, the pytest plugin and the
worker process all read :class:`AuditOptions`, with its defaults and its checks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum

from normcheck.errors import UsageError
from normcheck.quantization import Scheme, scheme

#: Every dtype normcheck audits, and the ones an audit covers when none is named.
DTYPES = ("float16", "bfloat16", "float32", "float64")
DEFAULT_DTYPES = ("float16", "bfloat16", "float32")
#: Where reproducers of large inputs store them when no report folder is named.
REPRODUCER_DIR = "normcheck-reproducers"


class Kind(StrEnum):
    """The normalization an implementation computes."""

    RMSNORM = "rmsnorm"
    LAYERNORM = "layernorm"


class Framework(StrEnum):
    """What a target is written in."""

    TORCH = "torch"
    JAX = "jax"
    NUMPY = "numpy"


class Style(StrEnum):
    """How a fused residual-add hands back ``y`` and ``x + residual``."""

    AUTO = "auto"  #: found on the first call
    INPLACE = "inplace"  #: writes y into x and x + residual into residual
    RETURN = "return"  #: returns (y, residual_out)


class InputLayout(StrEnum):
    """Where the normalized dimension is in the tensor the implementation takes."""

    LAST = "last"  #: the last dimension (rows of hidden size n)
    NCHW = "nchw"  #: channels first, (N, C, H, W): LayerNorm2d, ConvNext's channels_first
    NCL = "ncl"  #: channels first, (N, C, L): a 1-d channels-first norm (SqueezeBERT's)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and how. ``dtype`` is one dtype or several (kept as a tuple, in order, once each);
    ``eps`` constructs or calls the implementation with that eps (None: its own); ``compile`` names
    a torch.compile backend (JAX: any name means ``jax.jit``); ``residual`` audits a fused
    residual-add + norm answering in ``style``; ``layout`` says where the normalized dimension is in the
    tensor the implementation takes (channels first: ``nchw``, ``ncl``); ``param_dtype`` keeps the
    parameters in that dtype instead of the audited one; ``timeout`` is the seconds before a call counts
    as hanging (0: no limit); ``in_process`` runs the implementation in normcheck's own process (for a debugger);
    ``quant`` audits a norm fused with the quantization of its output into that element format, scaled as
    ``scaling`` says (:mod:`normcheck.quantization`; forward only)."""

    kind: str | None = None
    dtype: str | tuple[str, ...] = DEFAULT_DTYPES
    device: str = "cpu"
    eps: float | None = None
    weight_offset: int | None = None
    examples: int = 100
    seed: int = 0
    grad: bool = True
    hidden_sizes: tuple[int, ...] = ()
    shapes: tuple[tuple[int, ...], ...] = ()
    timeout: float = 20.0
    in_process: bool = False
    compile: str | None = None
    residual: bool = False
    style: str = Style.AUTO
    layout: str = InputLayout.LAST
    framework: str | None = None
    param_dtype: str | None = None
    quant: str | None = None
    scaling: str | None = None
    reproducer_dir: str = field(default=REPRODUCER_DIR, compare=False)

    def __post_init__(self) -> None:
        dtypes = (self.dtype,) if isinstance(self.dtype, str) else tuple(dict.fromkeys(self.dtype))
        object.__setattr__(self, "dtype", dtypes)
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        object.__setattr__(self, "shapes", tuple(tuple(s) for s in self.shapes))
        if not dtypes:
            raise UsageError("name at least one dtype")
        for dtype in dtypes:
            _choice("dtype", dtype, DTYPES)
        if self.kind is not None:
            _choice("kind", self.kind, tuple(Kind))
        if self.weight_offset is not None:
            _choice("weight offset", self.weight_offset, (0, 1))  # type: ignore[arg-type]  # ints, said as such
        if self.framework is not None:
            _choice("framework", self.framework, tuple(Framework))
        if self.param_dtype is not None:
            _choice("param dtype", self.param_dtype, DTYPES)
        _choice("style", self.style, tuple(Style))
        _choice("layout", self.layout, tuple(InputLayout))
        if self.layout != InputLayout.LAST and self.residual:
            raise UsageError(f"layout {self.layout} applies to a plain norm, not to a fused residual-add")
        if self.eps is not None and not (math.isfinite(self.eps) and self.eps >= 0):
            raise UsageError(f"eps must be a finite number >= 0, got {self.eps!r}")
        if any(n < 1 for n in self.hidden_sizes):
            raise UsageError(f"hidden sizes must be >= 1, got {list(self.hidden_sizes)}")
        if any(len(s) < 2 or min(s) < 1 for s in self.shapes):
            raise UsageError(f"shapes are ROWS x HIDDEN or A x B x ... x HIDDEN, every size >= 1, got {self.shapes}")
        if self.examples < 0:
            raise UsageError(f"examples must be >= 0, got {self.examples}")
        if not (math.isfinite(self.timeout) and self.timeout >= 0):
            raise UsageError(f"timeout must be a finite number of seconds >= 0, got {self.timeout!r}")
        if self.quant is not None:
            object.__setattr__(self, "scaling", scheme(self.quant, self.scaling).scaling)  # (a usage error)
            if self.layout != InputLayout.LAST:
                raise UsageError("--quant audits a norm over the last dimension (no --layout)")
            object.__setattr__(self, "grad", False)  # quantized outputs have no gradient
        if self.style != Style.AUTO and not self.residual:
            raise UsageError(f"style {self.style} applies to a fused residual-add: add --residual (residual=True)")

    def updated(self, **keywords: object) -> AuditOptions:
        """These options with ``keywords`` replacing fields (the API's and the pytest fixture's
        keywords); an unknown keyword is a usage error."""
        unknown = sorted(set(keywords) - {f.name for f in fields(self)})
        if unknown:
            known = ", ".join(f.name for f in fields(self))
            raise UsageError(f"unknown audit option(s) {', '.join(unknown)}; the options are {known}")
        return replace(self, **keywords)  # type: ignore[arg-type]  # checked again in __post_init__

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The audited dtypes, in order (``dtype`` as a tuple)."""
        return self.dtype  # type: ignore[return-value]  # a tuple after __post_init__

    @property
    def scheme(self) -> Scheme | None:
        """A quantized norm's output scheme, or None: a plain norm."""
        return None if self.quant is None else scheme(self.quant, self.scaling)

    @property
    def fused(self) -> str | None:
        """A fused residual-add's style, or None: a plain norm."""
        return self.style if self.residual else None

    def in_worker(self) -> AuditOptions:
        """The options the worker process builds its candidate with: no time limit (the auditor keeps it)."""
        return replace(self, timeout=0.0)

    def settings(self, framework: str) -> dict:
        """The settings the JSON report records besides dtypes, seed and examples."""
        return {
            "kind_given": self.kind is not None,
            "gradients": self.grad,
            "hidden_sizes": list(self.hidden_sizes),
            "shapes": [list(shape) for shape in self.shapes],
            "compile": self.compile,
            "residual": self.residual,
            "layout": self.layout,
            "timeout": self.timeout,
            "framework": framework,
            "param_dtype": self.param_dtype,
            "quant": self.quant,
            "scaling": self.scheme.scaling if self.scheme else None,
        }


#: The defaults, which the command line's and the API's are.
DEFAULTS = AuditOptions()
