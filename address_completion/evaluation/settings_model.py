"""An evaluation config's ``settings:`` mapping and ``systems:`` entries, validated by pydantic
(``extra="forbid"``, strict types, bounds, choices), with the project's own one-line messages: the key path, what
was expected, the nearest valid key for a typo and how to write a number YAML read as text.

The settings model is built from ``config.SETTING_RULES`` (setting -> (type, minimum or allowed values)), the
one table the CLI flags use too, so a rule is written once. Each system kind declares its model on its class
(``System.OPTIONS``) from :func:`text`, :func:`integer`, :func:`number` and :func:`choice`, which carry the
:class:`Expect` phrase its messages use; :func:`validate_options` turns pydantic's errors into those messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from ..errors import ConfigError, closest_match


def settings_model(rules: Mapping[str, tuple[type, Any]]) -> Any:
    """A pydantic model class with one optional field per rule (None means "not given"; ``limit`` may be null)."""
    from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

    fields: dict[str, Any] = {}
    for key, (kind, rule) in rules.items():
        if kind is int:
            annotation: Any = Annotated[StrictInt, Field(ge=rule)]
        elif kind is float:  # an integer is a number too; NaN and infinities are not
            annotation = Union[Annotated[StrictInt, Field(ge=math.ceil(rule))],
                               Annotated[StrictFloat, Field(ge=rule, allow_inf_nan=False)]]
        elif rule:  # one of a few words, any case
            annotation = Literal[tuple(rule)]
        else:
            annotation = StrictStr
        fields[key] = (Optional[annotation], None)

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    return create_model("EvalSettingsModel", __base__=Strict, **fields)


def validate_settings(raw: Mapping[str, Any], rules: Mapping[str, tuple[type, Any]], where: str,
                      number_hint: Any) -> dict[str, Any]:
    """The given settings as typed values, or ConfigError for the first bad key (in the file's order).

    ``number_hint(value, integer)`` adds how to write a number YAML read as text."""
    from pydantic import ValidationError

    lowered = {key: value.lower() if isinstance(value, str) and isinstance(rules.get(key, (None, None))[1], tuple)
               else value for key, value in raw.items()}
    try:
        parsed = settings_model(rules).model_validate(lowered)
    except ValidationError as error:
        order = {key: index for index, key in enumerate(raw)}
        first = min(error.errors(), key=lambda item: order.get(str(item["loc"][0]), len(order)))
        key = str(first["loc"][0])
        if first["type"] == "extra_forbidden":
            close = closest_match(key, list(rules))
            hint = f" (did you mean {close!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(rules)}") from None
        raise ConfigError(expected(key, raw[key], rules[key], f"{where}.{key}", number_hint)) from None
    values = {key: getattr(parsed, key) for key in raw}
    return {key: (float(value) if rules[key][0] is float and value is not None else value)
            for key, value in values.items()}


def expected(key: str, value: Any, rule: tuple[type, Any], where: str, number_hint: Any) -> str:
    """What a setting accepts, phrased for the user."""
    kind, bound = rule
    if kind is str:
        return f"{where}: expected {'one of ' + ', '.join(bound) if bound else 'a string'}, got {value!r}"
    what = "an integer" if kind is int else "a finite number"
    nullable = " (or null for all)" if key == "limit" else ""
    return f"{where}: expected {what} >= {bound}{nullable}, got {value!r}{number_hint(value, kind is int)}"


# ---------------------------------------------------------------- the systems: entries


@dataclass(frozen=True)
class Expect:
    """What a field accepts, phrased for the user (``expected {what}, got …``); ``template`` rewords the whole
    message (``{what}``, ``{value}``); ``above`` is said instead when the value exceeds the field's maximum."""

    what: str
    template: str = ""
    above: str = ""


def _fold_case(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def text(what: str = "a non-empty string", *, pattern: str | None = None, template: str = "",
         required: bool = False, strip: bool = True) -> Any:
    """A string field, not empty (surrounding spaces ignored with ``strip``; ``pattern``: a regular expression
    too); optional (None allowed) unless ``required``."""
    from pydantic import StringConstraints, StrictStr

    value = Annotated[StrictStr, StringConstraints(strip_whitespace=strip, min_length=1, pattern=pattern)]
    return Annotated[value if required else Optional[value], Expect(what, template)]


def integer(minimum: int, what: str = "") -> Any:
    """An optional integer field >= ``minimum`` (a bool is not an integer here)."""
    from pydantic import Field, StrictInt

    return Annotated[Optional[Annotated[StrictInt, Field(ge=minimum)]], Expect(what or f"an integer >= {minimum}")]


def number(minimum: float, maximum: float | None = None, above: str = "") -> Any:
    """An optional finite number >= ``minimum`` (and <= ``maximum``); an integer is a number too."""
    from pydantic import Field, StrictFloat, StrictInt

    return Annotated[Optional[Union[Annotated[StrictInt, Field(ge=math.ceil(minimum), le=maximum)],
                                    Annotated[StrictFloat, Field(ge=minimum, le=maximum, allow_inf_nan=False)]]],
                     Expect(f"a finite number >= {minimum}", above=above)]


def choice(allowed: tuple[str, ...], *, any_case: bool = False, template: str = "", required: bool = False) -> Any:
    """A field holding one of ``allowed`` (compared lower-cased with ``any_case``); optional unless ``required``."""
    from pydantic import BeforeValidator

    value = Literal[tuple(allowed)]
    folded: list[Any] = [BeforeValidator(_fold_case)] if any_case else []
    return Annotated[(value if required else Optional[value], *folded,
                      Expect(f"one of {', '.join(allowed)}", template))]


def options_base() -> Any:
    """The base of every system kind's options model: unknown keys are errors, values keep their YAML types."""
    from pydantic import BaseModel, ConfigDict

    class SystemOptions(BaseModel):
        """A ``systems:`` entry's kind-specific keys (subclasses declare them with :func:`text`, :func:`integer`,
        :func:`number`, :func:`choice`); checks that look at files or the environment go in an ``after`` model
        validator, which runs once every key has the right type and reads ``info.context["where"]``."""

        model_config = ConfigDict(extra="forbid", strict=True)

    return SystemOptions


def entry_model(options_model: Any, common: Mapping[str, Any]) -> Any:
    """``options_model`` plus the keys every entry may have (``common``: key -> annotation), for a whole entry."""
    from pydantic import create_model

    return create_model(f"{options_model.__name__}Entry", __base__=options_model,
                        **{key: (annotation, None) for key, annotation in common.items()})


def validate_options(model: Any, options: Mapping[str, Any], where: str, kind: str, got: Any, number_hint: Any,
                     extra_hints: Optional[Mapping[str, str]] = None) -> Any:
    """``options`` validated by ``model``, or ConfigError with one line for the first problem: an unknown key (with
    the nearest valid key, or ``extra_hints[key]``) before a missing one before a wrong value (in the file's
    order). ``got(value)`` shows a wrong value; ``number_hint(value, integer)`` says how to write a number YAML
    read as text. Checks in the model's own validators raise ConfigError themselves."""
    from pydantic import ValidationError

    fields = model.model_fields
    # A required key written as null is as good as missing ("a paddle system needs 'model'").
    options = {key: value for key, value in options.items()
               if not (value is None and key in fields and fields[key].is_required())}
    try:
        return model.model_validate(options, context={"where": where})
    except ValidationError as error:
        order = {key: index for index, key in enumerate(options)}
        fields = list(fields)
        rank = {"extra_forbidden": 0, "missing": 1}

        def position(item: Mapping[str, Any]) -> tuple[int, int]:
            key = str(item["loc"][0]) if item["loc"] else ""
            return rank.get(item["type"], 2), order.get(key, len(order) + fields.index(key) if key in fields else 0)

        problems = error.errors()
        first = min(problems, key=position)
        key = str(first["loc"][0])
        if first["type"] == "extra_forbidden":
            close = closest_match(key, fields)
            hint = f" (did you mean {close!r}?)" if close else (extra_hints or {}).get(key, "")
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(fields)}") from None
        if first["type"] == "missing":
            raise ConfigError(f"{where}: a {kind} system needs {key!r}") from None
        kinds = {item["type"] for item in problems if item["loc"] and str(item["loc"][0]) == key}
        raise ConfigError(wrong_value(model, key, options[key], kinds, f"{where}.{key}", got, number_hint)) from None


def wrong_value(model: Any, key: str, value: Any, kinds: set[str], where: str, got: Any, number_hint: Any) -> str:
    """The one-line message for a value of ``key`` that ``model`` refused, from the field's :class:`Expect`."""
    expect = next((item for item in model.model_fields[key].metadata if isinstance(item, Expect)),
                  Expect("a valid value"))
    if "less_than_equal" in kinds and expect.above:  # a union field fails once per member: any member says it
        return f"{where}: expected {expect.above}, got {got(value)}"
    if expect.template:
        return f"{where}: " + expect.template.format(what=expect.what, value=value)
    numeric = expect.what.startswith(("an integer", "a finite number"))
    hint = number_hint(value, expect.what.startswith("an integer")) if numeric else ""
    return f"{where}: expected {expect.what}, got {got(value)}{hint}"
