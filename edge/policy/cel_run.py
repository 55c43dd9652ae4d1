"""Running a cel-python compiled expression without `CompiledRunner.evaluate`'s per-call costs.

`CompiledRunner.evaluate` (cel-python 0.5) deep-copies the runner's base activation on every
call, resolves each root variable through name containers whose typing casts cost more than the
lookup, and its comparisons (`celpy.evaluation.bool_eq` and kin) build a `functools.wraps`
wrapper per call. `run` executes the same transpiled code with the same results and errors:
a small `_Activation` layered over the runner's base activation, and one globals dict of ours
(`EXEC_GLOBALS`) in which the comparison wrappers are built once.

That dict holds the activation of the running evaluation while it runs, so evaluations must not
interleave across threads; the edge evaluates policies on trio's single thread.
"""

from __future__ import annotations

import operator
import types
from typing import Any, Final, cast

import celpy
from celpy.evaluation import Activation, CELEvalError, NameContainer

__all__ = ["EXEC_GLOBALS", "run"]


class _Activation(Activation):
    """A celpy `Activation` for one evaluation, built without copying the runner's own.

    cel-python's `Transpiler.evaluate` deep-copies the runner's base activation for every call
    and resolves each `activation.req` through its name containers (with typing casts costing
    more than the lookup). This one layers the evaluation's variables in a new container over
    the base one (so comprehension macros, which nest activations on `identifiers`, see them as
    before) and answers top-level variable and function lookups from plain dicts.
    """

    def __init__(self, base: Activation, values: dict[str, object]) -> None:
        # No super().__init__(): it would rebuild the function table this shares with `base`.
        self._base = base
        self._values = values
        self._identifiers: NameContainer | None = None
        self.functions = base.functions
        self.package = base.package

    @property
    def identifiers(self) -> NameContainer:  # type: ignore[override]  # read-only here
        """The name container, built only when celpy needs it (a macro nests an activation)."""
        if self._identifiers is None:
            self._identifiers = NameContainer(parent=self._base.identifiers)
            self._identifiers.load_values(self._values)  # type: ignore[arg-type]
        return self._identifiers

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in {"_base", "_values", "_identifiers"}:
            raise AttributeError(name)  # our own fields, or copy/pickle probes: not variables
        try:
            return self._values[name]
        except KeyError:
            return super().__getattr__(name)

    get = __getattr__

    def resolve_variable(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            pass
        try:
            return self.functions[name]  # variables and functions never share a name
        except KeyError:
            return super().resolve_variable(name)


def _exec_globals() -> dict[str, Any]:
    """The globals transpiled expressions run in: cel-python's module, comparisons prebuilt.

    The transpiled code calls `celpy.evaluation.bool_eq(a, b)` (and `bool_lt`, ...), which
    builds `boolean(operator.eq)`, a `functools.wraps` wrapper, on every call. Here `celpy` is
    a view of the package whose `evaluation` has those six built once (the same wrappers, so
    the same results and errors); every other name is cel-python's own. Running in this dict
    rather than cel-python's module globals also leaves that module untouched.
    """
    evaluation = types.SimpleNamespace(**vars(celpy.evaluation))
    for name, compare in (
        ("bool_lt", operator.lt),
        ("bool_le", operator.le),
        ("bool_gt", operator.gt),
        ("bool_ge", operator.ge),
        ("bool_eq", operator.eq),
        ("bool_ne", operator.ne),
    ):
        setattr(evaluation, name, celpy.evaluation.boolean(compare))
    package = types.SimpleNamespace(**vars(celpy))
    package.evaluation = evaluation
    globals_ = dict(vars(celpy.evaluation))
    globals_["celpy"] = package
    return globals_


EXEC_GLOBALS: Final = _exec_globals()


def run(runner: celpy.Runner, context: dict[str, object]) -> object:
    """`CompiledRunner.evaluate(context)` without its per-call copy of the base activation.

    Same contract as cel-python's `Transpiler.evaluate`: the value, or `CELEvalError` raised
    for an evaluation error (wrapped as "evaluation error", as cel-python does).
    """
    transpiler = cast(celpy.CompiledRunner, runner).tp
    evaluation_globals = EXEC_GLOBALS
    evaluation_globals["base_activation"] = _Activation(transpiler.base_activation, context)
    try:
        exec(transpiler.executable_code, evaluation_globals)  # celpy's own transpiled code
        value = evaluation_globals["CEL"]
        if isinstance(value, CELEvalError):
            raise value
        return value
    except Exception as ex:
        # cel-python logs each failed evaluation this way (no traceback); so do we, unchanged.
        transpiler.logger.error("Internal error: %r", ex)  # noqa: TRY400
        raise CELEvalError("evaluation error", type(ex), ex.args) from None
