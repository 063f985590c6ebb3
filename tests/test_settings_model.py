"""evaluate's settings validated by a pydantic model (extra="forbid", strict types) with the project's messages."""

from __future__ import annotations

import pydantic
import pytest

from address_completion.errors import ConfigError
from address_completion.evaluation.config import SETTING_RULES, parse_settings
from address_completion.evaluation.settings_model import settings_model


def test_the_model_is_pydantic_and_forbids_unknown_keys():
    model = settings_model(SETTING_RULES)
    assert issubclass(model, pydantic.BaseModel) and model.model_config["extra"] == "forbid"
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({"batch_sise": 4})


def test_values_are_typed_and_words_lowered():
    settings = parse_settings({"timeout": 5, "backoff": 0, "device": "CPU", "limit": None, "batch_size": 3}, "s")
    assert (settings.timeout, settings.backoff, settings.device, settings.limit, settings.batch_size) == \
        (5.0, 0.0, "cpu", None, 3)
    assert isinstance(settings.timeout, float)


@pytest.mark.parametrize("raw, message", [
    ({"batch_size": True}, "s.batch_size: expected an integer >= 1, got True"),
    ({"batch_size": 2.0}, "s.batch_size: expected an integer >= 1, got 2.0"),
    ({"timeout": "5"}, "s.timeout: expected a finite number >= 0.001, got '5' (YAML read it as text: write 5.0, unquoted)"),
    ({"timeout": 0}, "s.timeout: expected a finite number >= 0.001, got 0"),
    ({"dtype": 16}, "s.dtype: expected one of"),
    ({"retries": None}, "s.retries: expected an integer >= 0, got None"),
    ({"worst_errors": 3, "devise": "cpu"}, "s: unknown key 'devise' (did you mean 'device'?); valid keys: batch_size"),
    ({"batch_size": 0, "timeout": -1}, "s.batch_size: expected an integer >= 1, got 0"),  # the first in the file
])
def test_bad_settings_get_one_line_naming_the_key(raw, message):
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, "s")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
