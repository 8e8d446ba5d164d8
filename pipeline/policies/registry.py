"""The policy types: one module each, registered here, read by everything else.

A policy type is one module of this package; ``load_all`` imports every module that is not
part of the ``MACHINERY``, so a new module registers itself. The module holds, side by side:

* the evaluator, a ``base.Policy`` subclass (``evaluate(trace) -> Decision``);
* the configuration of one policy of that type, a ``PolicyModel`` subclass with
  ``type: Literal["<type>"]`` and (usually) a section named after the type;
* ``register(Model, build)``, where ``build(config, context) -> Policy`` turns a
  validated config into an evaluator.

Nothing else names a policy type: ``config.py`` accepts in ``policies`` whatever is
registered, ``engine.py`` builds evaluators through ``build_policy``, ``check.py`` walks
sub-policies through ``PolicyModel.sub_policies``, and the JSON Schema follows from the
config model. Adding a type is one module, one test file
``tests/unit/policies/test_<type>.py`` and a regenerated schema
(``python -m pipeline.policies.schema``); ``tests/unit/policies/test_registry.py`` checks
that every module defining a policy registered one and has its test file.

Policies that hold sub-policies (and, not, drop, composite) type those fields with
``sub_policy_slot(field, also=...)``: a union, discriminated by ``type``, of every
registered type that is ``nestable`` (the collector's "shared" policies) plus the types
named in ``also`` (composite takes ``and`` too). The union is built when the models are
first used, after every module has registered, so a new nestable type is accepted in
every slot without touching the modules that hold slots. For that, a model that has a
slot must not be built before then: ``PolicyModel`` and ``SectionModel`` defer their
build.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args

from pydantic import ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema

from pipeline.config.models import NonEmptyStr, StrictModel, custom_error
from pipeline.policies.base import Policy
from pipeline.policies.shared import SharedState

# The collector's types, in the order its README lists them: the order of error messages
# and of the JSON Schema. A type whose module is not named here comes after them, by name.
COLLECTOR_ORDER: tuple[str, ...] = (
    "always_sample",
    "latency",
    "numeric_attribute",
    "probabilistic",
    "status_code",
    "string_attribute",
    "boolean_attribute",
    "span_count",
    "trace_state",
    "trace_flags",
    "rate_limiting",
    "bytes_limiting",
    "ottl_condition",
    "and_",
    "not_",
    "drop",
    "composite",
)

# The package's modules that are not policy types (the machinery around them); every other
# module of the package is a policy type and is imported by ``load_all``.
MACHINERY: frozenset[str] = frozenset(
    {
        "adaptive_rates",
        "base",
        "bench",
        "check",
        "config",
        "decision",
        "engine",
        "limiter",
        "ottl",
        "percentiles",
        "registry",
        "schema",
        "shared",
        "trace",
    }
)

TOP_LEVEL_SLOT = "policies"  # the top-level list: every registered type

Clock = Callable[[], float]


# --------------------------------------------------------------------------- models


class PolicyModel(StrictModel):
    """The configuration of one policy: ``name``, ``type`` and the type's own keys.

    A subclass declares ``type: Literal["<type>"]`` and its section. Its build is deferred
    until every policy type is registered (see ``sub_policy_slot``).
    """

    model_config = ConfigDict(defer_build=True)

    name: NonEmptyStr

    @classmethod
    def unknown_key_owner(cls, data: dict[Any, Any]) -> str:
        kind = data.get("type")
        return f"a policy of type {kind!r}" if isinstance(kind, str) else "a policy"

    def sub_policies(self) -> Sequence[PolicyModel]:
        """The configs of the policies this one holds, in file order (none by default)."""
        return ()


class SectionModel(StrictModel):
    """A policy's section that holds sub-policy slots: built late, like ``PolicyModel``."""

    model_config = ConfigDict(defer_build=True)


def type_name(model: type[PolicyModel]) -> str:
    """The ``type`` a policy model accepts: the value of its ``Literal`` annotation."""
    field = model.model_fields.get("type")
    values = get_args(field.annotation) if field is not None else ()
    if len(values) != 1 or not isinstance(values[0], str):
        raise TypeError(f"{model.__name__} needs a field type: Literal['<policy type>']")
    return values[0]


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a ``build`` function gets besides its config: the clock for budgets, the
    state shared by all workers (None: each worker on its own), how long after a trace
    falls due its decision may come (``decision_lag``: a worker's tick and a margin; 0
    where traces are decided as they are handed over), and ``build`` for sub-policies."""

    clock: Clock = time.monotonic
    shared: SharedState | None = None
    decision_lag: float = 0.0

    def build(self, config: PolicyModel) -> Policy:
        return policy_type(config.type).build(config, self)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class PolicyType:
    """One registered policy type."""

    name: str  # the YAML ``type``
    model: type[PolicyModel]
    build: Callable[[Any, BuildContext], Policy]
    nestable: bool  # accepted in every sub-policy slot (and, not, drop, composite)
    evaluated_first: bool  # the engine evaluates these before all others (drop)
    module: str


_TYPES: dict[str, PolicyType] = {}
_SLOTS: dict[str, tuple[str, ...] | None] = {TOP_LEVEL_SLOT: None}  # None: every type
_state = {"loaded": False, "loading": False}


def register(
    model: type[PolicyModel],
    build: Callable[[Any, BuildContext], Policy],
    *,
    nestable: bool = True,
    evaluated_first: bool = False,
) -> PolicyType:
    """Register a policy type: its config model and ``build(config, context) -> Policy``.

    ``nestable=False`` keeps it out of sub-policy slots (policies that hold policies);
    ``evaluated_first`` makes the engine run it before the others (drop policies).
    """
    name = type_name(model)
    known = _TYPES.get(name)
    if known is not None and known.model is not model:
        raise ValueError(f"policy type {name!r} registered twice ({known.model.__qualname__})")
    entry = PolicyType(name, model, build, nestable, evaluated_first, model.__module__)
    _TYPES[name] = entry
    return entry


def load_all() -> None:
    """Import every module of the package (each policy module registers its type);
    idempotent."""
    if _state["loaded"]:
        return
    if _state["loading"]:
        raise RuntimeError(
            "the policy registry was read while its modules were being imported: a policy "
            "module must not build models or read the registry at import time"
        )
    _state["loading"] = True
    try:
        package = importlib.import_module(__package__)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in MACHINERY:
                importlib.import_module(f"{__package__}.{module.name}")
        _state["loaded"] = True
    finally:
        _state["loading"] = False


def _order(entry: PolicyType) -> tuple[int, str]:
    short = entry.module.rpartition(".")[2]
    rank = COLLECTOR_ORDER.index(short) if short in COLLECTOR_ORDER else len(COLLECTOR_ORDER)
    return rank, entry.name


def policy_types() -> list[PolicyType]:
    """Every registered type, in ``COLLECTOR_ORDER``, then new types by name."""
    load_all()
    return sorted(_TYPES.values(), key=_order)


def policy_type(name: str) -> PolicyType:
    load_all()
    try:
        return _TYPES[name]
    except KeyError:
        raise ValueError(f"unknown policy type {name!r}") from None


def type_names() -> tuple[str, ...]:
    return tuple(t.name for t in policy_types())


def build_policy(
    config: PolicyModel,
    clock: Clock = time.monotonic,
    shared: SharedState | None = None,
    decision_lag: float = 0.0,
) -> Policy:
    """The evaluator for one validated policy config."""
    return BuildContext(clock, shared, decision_lag).build(config)


# --------------------------------------------------------------------------- slots


@dataclass(frozen=True)
class _Slot:
    """Annotation marker: the tagged union of the types allowed in slot ``name``."""

    name: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        models = tuple(policy_type(t).model for t in slot_types(self.name))
        union = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
        return handler.generate_schema(union)


def sub_policy_slot(field: str, *, also: Sequence[str] = ()) -> Any:
    """The annotation of one sub-policy held in the field ``field``: a policy config of any
    nestable type, or of one of the types in ``also``. ``field`` names the slot in error
    messages ("allowed types here: ..."), so pass the field's YAML key."""
    wanted = tuple(also)
    if _SLOTS.get(field, wanted) != wanted:
        raise ValueError(f"sub-policy slot {field!r} declared twice, differently")
    _SLOTS[field] = wanted
    return Annotated[PolicyModel, _Slot(field)]


def any_policy() -> Any:
    """The annotation of one top-level policy: any registered type."""
    return Annotated[PolicyModel, _Slot(TOP_LEVEL_SLOT)]


def slot_names() -> tuple[str, ...]:
    return tuple(_SLOTS)


def slot_types(slot: str) -> list[str]:
    """The types a slot accepts, in registry order."""
    also = _SLOTS[slot]
    types = policy_types()
    if also is None:
        return [t.name for t in types]
    return [t.name for t in types if t.nestable or t.name in also]


# --------------------------------------------------------------------------- validation


def no_duplicate_names(names: Sequence[str], where: str) -> None:
    """A validation error at ``<where>[i].name`` for the first repeated policy name."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise custom_error(
                "duplicate policy name {name} (names must be unique)",
                (where, i, "name"),
                name=repr(name),
            )
        seen.add(name)
