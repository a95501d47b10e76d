"""What an interpreter is: a typed function plus a spec the job, the CLI and the atlas select on.

Every built-in interpreter is a plain public function (``te.ff_value(model, layer=3)``),
registered where it is defined with :func:`register_interpreter`. The registry holds one
:class:`InterpreterSpec` per name: what the function produces, what its rows are indexed by, which
basis side it reads with, how it is called (once per layer, per head, or free) and which weights
a layer must have for it to apply.

Third-party interpreters register the same way::

    import tl_embspace as te

    @te.register_interpreter(
        "norm_of_values", produces="vectors", indexed_by="neuron", side="write", scope="layer",
        requires=("W_out",),
    )
    def norm_of_values(source, *, layer: int, **basis):
        \"\"\"Norm of every FF value vector (a toy example).\"\"\"
        space = te.as_space(source, **basis)
        return space.view.layer(layer).W_out.norm(dim=-1)

    te.interpret("norm_of_values", model, layer=1)  # options are checked against the signature
"""

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ..errors import InvalidArgumentError, OptionError, UnsupportedLayerError
from ..registry import Registry

Produces = Literal["vectors", "pairs"]
IndexedBy = Literal[
    "neuron", "head", "kv_head", "expert", "component", "parameter", "token", "free"
]
Side = Literal["read", "write", "read×read", "read×write", "per_call"]
Scope = Literal["layer", "head", "model"]

PRODUCES: tuple[str, ...] = ("vectors", "pairs")
INDEXED_BY: tuple[str, ...] = (
    "neuron",
    "head",
    "kv_head",
    "expert",
    "component",
    "parameter",
    "token",
    "free",
)
SIDES: tuple[str, ...] = ("read", "write", "read×read", "read×write", "per_call")
SCOPES: tuple[str, ...] = ("layer", "head", "model")

#: Options that build the :class:`EmbeddingSpace` when a model or view is passed (see as_space).
BASIS_OPTIONS: tuple[str, ...] = ("read", "write", "transport", "tokenizer")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class InterpreterSpec:
    """One registered interpreter: its function and what the job, CLI and atlas need to know.

    Attributes:
        name: Registry name (``"ff_value"``, ``"q"``, ...).
        function: The public typed function, ``function(source, **options)``; ``source`` is a
            model, a ``WeightView`` or an ``EmbeddingSpace``. A ``**basis`` catch-all in its
            signature means it accepts the basis options ``read/write/transport/tokenizer``.
        produces: ``"vectors"`` (a VectorProjection: top/bottom tokens per row) or ``"pairs"``
            (a PairProjection: top/bottom token pairs of a factored vocab x vocab circuit).
        indexed_by: What the result's rows (or, for pairs and per-head SVDs, the calls) are keyed
            by: ``neuron``, ``head`` (query head), ``kv_head``, ``expert`` (a sparse-MoE
            layer's experts), ``component`` (singular
            direction), ``parameter`` (a named bias), ``token`` or ``free`` (user vectors).
        side: The basis side(s) used: ``read``, ``write``, ``read×read`` / ``read×write``
            (pairs: left × right) or ``per_call`` (chosen by an option, e.g. ``which=``).
        scope: How it is called: ``layer`` (``layer=``; one call covers the layer), ``head``
            (``layer=`` and ``head=``; one call per head) or ``model`` (no layer).
        requires: ``LayerWeights`` fields a layer must have (not None); ``"b_O|b_out"`` means
            either one. Empty for interpreters every layer supports.
        description: One line for tables and ``--help`` (default: the docstring's first line).
    """

    name: str
    function: Callable[..., Any] = field(repr=False)
    produces: Produces
    indexed_by: IndexedBy
    side: Side
    scope: Scope
    requires: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        for attr, valid in (
            ("produces", PRODUCES),
            ("indexed_by", INDEXED_BY),
            ("side", SIDES),
            ("scope", SCOPES),
        ):
            value = getattr(self, attr)
            if value not in valid:
                raise InvalidArgumentError(
                    f"interpreter {self.name!r}: {attr}={value!r} is not one of {', '.join(valid)}"
                )
        if not callable(self.function):
            raise InvalidArgumentError(f"interpreter {self.name!r}: function must be callable")

    @property
    def options(self) -> tuple[str, ...]:
        """Keyword options the function accepts, in signature order (basis options last)."""
        params = list(inspect.signature(self.function).parameters.values())[1:]
        names = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if any(p.kind is p.VAR_KEYWORD for p in params):
            names += [b for b in BASIS_OPTIONS if b not in names]
        return tuple(names)

    @property
    def required_options(self) -> tuple[str, ...]:
        """Options without a default (e.g. ``layer``)."""
        params = list(inspect.signature(self.function).parameters.values())[1:]
        return tuple(
            p.name
            for p in params
            if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        )

    def check_options(self, options: Iterable[str]) -> None:
        """Raise :class:`OptionError` on an unknown option or a missing required one.

        The message lists the valid options and suggests the closest spelling.
        """
        given = list(options)
        valid = self.options
        unknown = [o for o in given if o not in valid]
        if unknown:
            hints = []
            for o in unknown:
                close = difflib.get_close_matches(o, valid, n=1)
                hints.append(f"{o!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise OptionError(
                f"interpreter {self.name!r} got unknown option(s) {', '.join(hints)}; "
                f"valid options: {', '.join(valid)}"
            )
        missing = [o for o in self.required_options if o not in given]
        if missing:
            raise OptionError(
                f"interpreter {self.name!r} needs option(s) {', '.join(map(repr, missing))}; "
                f"valid options: {', '.join(valid)}"
            )

    def applies_to(self, layer_weights: Any) -> bool:
        """Whether a layer has what this interpreter reads (``LayerWeights`` of one layer).

        ``ff_gate`` does not apply to a non-gated MLP, ``ff_*`` / ``svd_in`` / ``svd_out`` not to
        an attention-only layer; ``model``-scope interpreters apply to no single layer.
        """
        if self.scope == "model":
            return False
        return all(
            any(_has(layer_weights, name) for name in need.split("|")) for need in self.requires
        )

    def __call__(self, source: Any, **options: Any) -> Any:
        """Check ``options`` against the signature, then run the function on ``source``."""
        self.check_options(options)
        return self.function(source, **options)


def _has(layer_weights: Any, name: str) -> bool:
    """Whether a layer has field ``name`` (a hybrid's mixer layer refuses attention fields)."""
    try:
        return getattr(layer_weights, name) is not None
    except UnsupportedLayerError:
        return False


class InterpreterRegistry(Registry[InterpreterSpec]):
    """The registry of interpreter specs, with selection by what they produce and index."""

    def add(self, name: str, obj: InterpreterSpec, *, replace: bool = False) -> None:
        """Register a spec under its own name (a bare function is refused with the fix)."""
        if not isinstance(obj, InterpreterSpec):
            raise InvalidArgumentError(
                f"interpreters holds InterpreterSpec entries, got {type(obj).__name__}; "
                "decorate the function with @tl_embspace.register_interpreter(...) instead"
            )
        if obj.name != name:
            raise InvalidArgumentError(f"spec named {obj.name!r} registered as {name!r}")
        super().add(name, obj, replace=replace)

    def select(
        self,
        *,
        produces: "str | Iterable[str] | None" = None,
        indexed_by: "str | Iterable[str] | None" = None,
        scope: "str | Iterable[str] | None" = None,
        applies_to: Any = None,
    ) -> list[InterpreterSpec]:
        """Specs matching every given filter, in registration order (stable).

        Args:
            produces: ``"vectors"`` / ``"pairs"`` or several of them.
            indexed_by: One or several of :data:`INDEXED_BY`.
            scope: One or several of ``"layer"``, ``"head"``, ``"model"``.
            applies_to: A layer's ``LayerWeights``: keep only the specs that apply to it.
        """
        wanted: Mapping[str, tuple[str, ...] | None] = {
            "produces": _check_filter("produces", produces, PRODUCES),
            "indexed_by": _check_filter("indexed_by", indexed_by, INDEXED_BY),
            "scope": _check_filter("scope", scope, SCOPES),
        }
        return [
            spec
            for spec in self.values()
            if all(ok is None or getattr(spec, attr) in ok for attr, ok in wanted.items())
            and (applies_to is None or spec.applies_to(applies_to))
        ]


def _check_filter(
    what: str, value: "str | Iterable[str] | None", valid: tuple[str, ...]
) -> tuple[str, ...] | None:
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else tuple(value)
    bad = [v for v in values if v not in valid]
    if bad:
        raise InvalidArgumentError(f"{what}={bad!r}: expected one of {', '.join(valid)}")
    return values


#: Name-keyed registry of interpreter specs (registration order is the stable selection order).
interpreters = InterpreterRegistry("interpreter")


def register_interpreter(
    name: str,
    *,
    produces: Produces,
    indexed_by: IndexedBy,
    side: Side,
    scope: Scope,
    requires: tuple[str, ...] = (),
    description: str | None = None,
    replace: bool = False,
) -> Callable[[F], F]:
    """Decorator: register a function as interpreter ``name`` and return it unchanged.

    The function takes the model, view or space first, then keyword options; see the module
    docstring for a complete example. A duplicate name raises unless ``replace=True``.
    """

    def decorate(function: F) -> F:
        doc = (inspect.getdoc(function) or "").strip().splitlines()
        spec = InterpreterSpec(
            name=name,
            function=function,
            produces=produces,
            indexed_by=indexed_by,
            side=side,
            scope=scope,
            requires=tuple(requires),
            description=description if description is not None else (doc[0] if doc else ""),
        )
        interpreters.add(name, spec, replace=replace)
        return function

    return decorate


def interpret(name: str, source: Any, **options: Any) -> Any:
    """Run the interpreter ``name`` on a model, weight view or EmbeddingSpace.

    Options are checked against the interpreter's signature first: an unknown or misspelt option,
    or a missing required one, raises :class:`~tl_embspace.errors.OptionError` listing the valid
    options. Basis options (``read=``, ``write=``, ``transport=``, ``tokenizer=``) build the space
    when a model or view is passed.
    """
    return interpreters[name](source, **options)


__all__ = [
    "InterpreterSpec",
    "InterpreterRegistry",
    "interpreters",
    "register_interpreter",
    "interpret",
    "BASIS_OPTIONS",
]
