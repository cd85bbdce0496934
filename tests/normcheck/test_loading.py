"""Unit tests of normcheck.target.loading: finding a target, building a module the way its constructor is
spelled, and telling module classes and plain functions apart.

Constructors here are plain Python classes that record how they were called, so most tests need no torch;
the CLI's messages for the same errors are tested end to end in test_cli_audit.py.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from normcheck.errors import UsageError
from normcheck.target.loading import (
    EPS_NAMES,
    SIZE_NAMES,
    construct_module,
    input_parameter,
    is_module_class,
    load_target,
)

MakeModule = Callable[[str, str], Path]


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeModule]:
    """Write an importable module ``name`` (a dotted name makes packages) under tmp_path; forget it after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(name: str, source: str) -> Path:
        *packages, leaf = name.split(".")
        folder = tmp_path
        for i, package in enumerate(packages):
            folder = folder / package
            folder.mkdir(exist_ok=True)
            (folder / "__init__.py").touch()
            made.append(".".join(packages[: i + 1]))
        path = folder / f"{leaf}.py"
        path.write_text(textwrap.dedent(source))
        made.append(name)
        importlib.invalidate_caches()
        return path

    yield make
    for name in made:
        sys.modules.pop(name, None)


NORMS = """
    class Norm:
        class Inner:
            pass

    def factory(dim):
        return Norm()

    SIZE = 8
"""


# -- load_target -------------------------------------------------------------


def test_a_dotted_name_loads_the_attribute_of_the_longest_importable_module(make_module: MakeModule) -> None:
    make_module("nc_pkg.norms", NORMS)
    norm = load_target("nc_pkg.norms.Norm")
    assert norm.__name__ == "Norm" and norm.__module__ == "nc_pkg.norms"
    assert load_target("nc_pkg.norms.Norm.Inner").__qualname__ == "Norm.Inner"
    assert load_target("os.path.join") is __import__("os").path.join


def test_module_colon_name_loads_the_attribute_and_dotted_attributes_after_the_colon(make_module: MakeModule) -> None:
    make_module("nc_pkg2.norms", NORMS)
    assert load_target("nc_pkg2.norms:factory").__name__ == "factory"
    assert load_target("nc_pkg2.norms:Norm.Inner").__qualname__ == "Norm.Inner"


def test_a_file_path_colon_name_runs_the_file_and_returns_the_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "some" / "dir"
    folder.mkdir(parents=True)
    (folder / "norms.py").write_text(textwrap.dedent(NORMS))
    absolute = load_target(f"{folder / 'norms.py'}:Norm")
    assert absolute.__name__ == "Norm"
    monkeypatch.chdir(tmp_path)
    relative = load_target("some/dir/norms.py:Norm")
    assert relative.__name__ == "Norm"
    assert sys.modules[relative.__module__].__file__ == str(folder / "norms.py")


@pytest.mark.parametrize("spec", ["", " torch.nn.RMSNorm", "torch.nn.RMSNorm\n"])
def test_an_empty_or_padded_spec_is_a_usage_error_with_an_example(spec: str) -> None:
    with pytest.raises(UsageError, match=r"invalid target .*expected e\.g\. mypkg\.RMSNorm or path/to/file\.py:Name"):
        load_target(spec)


def test_a_missing_module_is_a_usage_error_naming_it() -> None:
    with pytest.raises(UsageError, match=r"cannot import target 'nc_nope\.sub\.Norm': no module 'nc_nope'"):
        load_target("nc_nope.sub.Norm")
    with pytest.raises(UsageError, match=r"cannot import 'nc_nope' for target 'nc_nope:Norm': No module named"):
        load_target("nc_nope:Norm")


def test_a_missing_submodule_falls_back_to_an_attribute_of_its_parent() -> None:
    with pytest.raises(UsageError, match=r"target 'json\.nope\.Name': json has no attribute 'nope'"):
        load_target("json.nope.Name")


def test_a_missing_attribute_is_a_usage_error_naming_the_object_and_the_attribute(make_module: MakeModule) -> None:
    make_module("nc_attrs", NORMS)
    with pytest.raises(UsageError, match=r"target 'nc_attrs\.Nope': nc_attrs has no attribute 'Nope'"):
        load_target("nc_attrs.Nope")
    with pytest.raises(UsageError, match=r"target 'nc_attrs:Norm\.Gone': Norm has no attribute 'Gone'"):
        load_target("nc_attrs:Norm.Gone")


def test_an_attribute_that_is_not_callable_is_a_usage_error(make_module: MakeModule) -> None:
    make_module("nc_values", NORMS)
    with pytest.raises(UsageError, match=r"target 'nc_values\.SIZE' is a int, not a class or function"):
        load_target("nc_values.SIZE")


def test_a_module_that_fails_while_importing_is_a_usage_error_with_its_exception(make_module: MakeModule) -> None:
    make_module("nc_broken", "raise RuntimeError('boom at import')\n")
    for spec in ("nc_broken.Norm", "nc_broken:Norm"):
        with pytest.raises(UsageError, match=r"importing 'nc_broken' .*failed: RuntimeError: boom at import"):
            load_target(spec)


def test_a_module_whose_own_import_is_missing_says_which_one(make_module: MakeModule) -> None:
    make_module("nc_needs_dep", "import nc_absent_dependency\nclass Norm: pass\n")
    with pytest.raises(UsageError, match=r"cannot import 'nc_needs_dep' .*No module named 'nc_absent_dependency'"):
        load_target("nc_needs_dep.Norm")


def test_a_missing_dependency_whose_name_prefixes_the_module_is_named(make_module: MakeModule) -> None:
    make_module("nc_dep_user", "import nc_dep\nclass Norm: pass\n")
    with pytest.raises(UsageError, match=r"No module named 'nc_dep'"):
        load_target("nc_dep_user.Norm")


def test_a_missing_file_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"^no such file 'no/such/norms\.py'$"):
        load_target("no/such/norms.py:Norm")


def test_a_file_that_fails_while_running_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("1 / 0\n")
    with pytest.raises(UsageError, match=r"running '.*bad\.py' failed: ZeroDivisionError"):
        load_target(f"{bad}:Norm")


def test_a_file_without_the_name_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "norms.py").write_text(textwrap.dedent(NORMS))
    with pytest.raises(UsageError, match=r"has no attribute 'Missing'"):
        load_target(f"{tmp_path / 'norms.py'}:Missing")


# -- construct_module --------------------------------------------------------


class Recorder:
    """Keeps the arguments it was constructed with."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args, self.kwargs = args, kwargs


class HiddenEps(Recorder):
    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__(hidden_size=hidden_size, eps=eps)


class DimOnly(Recorder):
    def __init__(self, dim: int) -> None:
        super().__init__(dim=dim)


class EpsOnly(Recorder):
    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__(eps=eps)


class OddlyNamed(Recorder):
    """Neither a size name nor an eps name: the size goes first, by position."""

    def __init__(self, width: int, tolerance: float = 1e-6) -> None:
        super().__init__(width, tolerance=tolerance)


class ShapeOnly(Recorder):
    """Indexes its size (``normalized_shape[-1]``): an int is a TypeError."""

    def __init__(self, normalized_shape: tuple[int, ...], eps: float = 1e-5) -> None:
        super().__init__(normalized_shape=(normalized_shape[-1],), eps=eps)


class PositionalShape(Recorder):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__(shape[-1])


class VarArgs(Recorder):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)


class WithConfig(Recorder):
    """Transformers style: a config object with the size on it (not supported: it gets the int)."""

    def __init__(self, config: object) -> None:
        super().__init__(config.hidden_size)


class Strict(Recorder):
    """Refuses every size with a ValueError."""

    calls = 0

    def __init__(self, hidden_size: object) -> None:
        type(self).calls += 1
        raise ValueError(f"bad size {hidden_size!r}")


def _build(maker: object, hidden: int, eps: float | None, extra: dict | None = None, **kw: bool) -> Recorder:
    """``construct_module``'s result, checked to be what the maker built."""
    built = construct_module(maker, hidden, eps, extra, **kw)
    assert isinstance(built, Recorder)
    return built


def test_the_size_and_eps_go_to_their_named_parameters() -> None:
    m = _build(HiddenEps, 64, 1e-3)
    assert type(m) is HiddenEps and m.kwargs == {"hidden_size": 64, "eps": 1e-3} and m.args == ()


def test_without_a_stated_eps_the_constructor_keeps_its_own() -> None:
    assert _build(HiddenEps, 8, None).kwargs == {"hidden_size": 8, "eps": 1e-6}
    assert _build(DimOnly, 8, 1e-3).kwargs == {"dim": 8}  # no eps taken


@pytest.mark.parametrize("size_name", SIZE_NAMES)
@pytest.mark.parametrize("eps_name", EPS_NAMES)
def test_every_size_and_eps_spelling_is_recognized(size_name: str, eps_name: str) -> None:
    namespace: dict[str, object] = {"Recorder": Recorder}
    exec(
        f"class Norm(Recorder):\n    def __init__(self, {eps_name}=0.5, *, {size_name}=0):\n"
        f"        super().__init__({size_name}={size_name}, {eps_name}={eps_name})\n",
        namespace,
    )
    m = _build(namespace["Norm"], 16, 1e-4)
    assert m.kwargs == {size_name: 16, eps_name: 1e-4}


def test_a_constructor_taking_only_eps_gets_no_size() -> None:
    assert _build(EpsOnly, 8, None).kwargs == {"eps": 1e-5}
    assert _build(EpsOnly, 8, 1e-3).kwargs == {"eps": 1e-3}


def test_an_unrecognized_first_parameter_gets_the_size_by_position() -> None:
    m = _build(OddlyNamed, 32, 1e-3)
    assert m.args == (32,) and m.kwargs == {"tolerance": 1e-6}  # eps unknown: kept
    with pytest.raises(UsageError, match=r"^cannot construct OddlyNamed\(\): TypeError"):
        construct_module(OddlyNamed, 32, None, positional_size=False)  # Flax: no size by position


def test_a_size_refused_as_an_int_is_passed_as_a_shape() -> None:
    assert _build(ShapeOnly, 12, 1e-3).kwargs == {"normalized_shape": (12,), "eps": 1e-3}
    assert _build(PositionalShape, 12, None).args == (12,)


def test_varargs_constructors_get_the_size_first_and_the_extras() -> None:
    m = _build(VarArgs, 10, 1e-3, {"param_dtype": "float32"})
    assert m.args == (10,) and m.kwargs == {"param_dtype": "float32"}  # no eps name


def test_extras_go_only_where_the_constructor_takes_them_or_passes_kwargs_on() -> None:
    assert _build(HiddenEps, 4, None, {"rngs": 0}).kwargs == {"hidden_size": 4, "eps": 1e-6}

    class TakesDtype(Recorder):
        def __init__(self, dim: int, param_dtype: str = "x", **kwargs: object) -> None:
            super().__init__(dim=dim, param_dtype=param_dtype, **kwargs)

    m = _build(TakesDtype, 4, None, {"param_dtype": "float32", "rngs": 7})
    assert m.kwargs == {"dim": 4, "param_dtype": "float32", "rngs": 7}


def test_a_factory_function_is_called_like_a_constructor() -> None:
    def make(d_model: int, norm_eps: float = 1e-6) -> Recorder:
        return Recorder(d_model=d_model, norm_eps=norm_eps)

    assert _build(make, 24, 1e-2).kwargs == {"d_model": 24, "norm_eps": 1e-2}


def test_a_maker_without_a_signature_gets_the_size_first() -> None:
    class Opaque:
        __signature__ = "not a signature"  # inspect.signature raises TypeError

        def __call__(self, *args: object) -> Recorder:
            return Recorder(*args)

    assert _build(Opaque(), 6, 1e-3).args == (6,)


def test_a_config_constructor_is_a_usage_error_showing_the_call_it_tried() -> None:
    with pytest.raises(UsageError, match=r"^cannot construct WithConfig\(8\): AttributeError: .*hidden_size"):
        _build(WithConfig, 8, None)


def test_an_error_other_than_a_type_error_is_not_retried_with_a_shape() -> None:
    Strict.calls = 0
    with pytest.raises(UsageError, match=r"cannot construct Strict\(hidden_size=8\): ValueError: bad size 8$"):
        _build(Strict, 8, None)
    assert Strict.calls == 1


def test_a_type_error_on_every_attempt_reports_the_first() -> None:
    def picky(hidden_size: int, eps: float) -> None:
        raise TypeError(f"no to {hidden_size!r}")

    with pytest.raises(UsageError, match=r"cannot construct picky\(hidden_size=8, eps=0\.1\): TypeError: no to 8$"):
        _build(picky, 8, 0.1)


# -- is_module_class and input_parameter -------------------------------------


def test_is_module_class_is_true_only_for_torch_module_subclasses() -> None:
    torch = pytest.importorskip("torch")
    assert is_module_class(torch.nn.RMSNorm) and is_module_class(torch.nn.Module)
    assert not is_module_class(torch.nn.RMSNorm(4))  # an instance, not a class
    assert not is_module_class(torch.nn.functional.rms_norm)
    assert not is_module_class(Recorder)


def test_is_module_class_is_false_when_torch_was_never_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert not is_module_class(Recorder) and not is_module_class(int)


def test_input_parameter_names_the_tensor_parameter_of_a_plain_function() -> None:
    def rms(hidden_states: object, weight: object = None) -> object:
        return hidden_states

    def two(a: object, b: object) -> object:
        return a

    def none() -> None:
        return None

    assert input_parameter(rms) == "hidden_states"
    assert input_parameter(lambda x, eps=1e-6: x) == "x"
    assert input_parameter(two) is None  # its first parameter is no input name
    assert input_parameter(none) is None
    assert input_parameter(len) is None  # obj: not an input name
    assert input_parameter(42) is None  # not callable: no signature


def test_input_parameter_of_torch_functional_norms_is_input() -> None:
    torch = pytest.importorskip("torch")
    assert input_parameter(torch.nn.functional.rms_norm) == "input"
    assert input_parameter(torch.nn.functional.layer_norm) == "input"
