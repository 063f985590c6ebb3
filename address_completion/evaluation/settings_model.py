"""The ``settings:`` mapping of an evaluation config, validated by pydantic (``extra="forbid"``, strict types,
bounds), with the project's own one-line messages: the key path, what was expected, the nearest valid key for
a typo and how to write a number YAML read as text.

The model is built from ``evaluate.SETTING_RULES`` (setting -> (type, minimum or allowed values)), the one table
the CLI flags use too, so a rule is written once.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Optional, Union

from ..errors import ConfigError, closest_match


def settings_model(rules: Mapping[str, tuple[type, Any]]) -> Any:
    """A pydantic model class with one optional field per rule (None means "not given"; ``limit`` may be null)."""
    from typing import Annotated

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
