"""The evaluation config: the YAML file (test file, output folder, settings, systems) read, checked key by key and
overridden with ``--set`` (docs/evaluation.md). Every mistake is a ConfigError naming the file, line or key."""

from __future__ import annotations

import copy
import argparse
import functools
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..data import dataio
from ..data.gazetteer import DETAILS
from ..errors import ConfigError, DataError, closest_match
from ..flags import user_path
from .settings_model import entry_model, expected, integer, text, validate_settings
from .registry import COMMON_KEYS, KINDS
from .systems import DEVICES, DTYPES, EvalSettings, SystemSpec, yaml_number_hint

TOP_KEYS = ("test_file", "output_dir", "settings", "systems", "title")
# setting -> (type, minimum or allowed values); None as a value is allowed only for "limit".
SETTING_RULES: dict[str, tuple[type, Any]] = {
    "batch_size": (int, 1), "max_new_tokens": (int, 1), "limit": (int, 1), "timeout": (float, 0.001),
    "retries": (int, 0), "backoff": (float, 0.0), "concurrency": (int, 1), "worst_errors": (int, 0),
    "dtype": (str, DTYPES), "device": (str, DEVICES),
    "prompt_prefix": (str, None), "detail": (str, DETAILS),
}
EXPECTED_MAPPING = "expected a YAML mapping with test_file, output_dir and systems (see configs/eval_tiny.yaml)"
TOP_LEVEL_KINDS = {list: "a list", str: "text", int: "a number", float: "a number", bool: "a boolean",
                   bytes: "binary data"}
SYSTEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
# The keys every systems: entry may have besides its kind's (COMMON_KEYS), as pydantic field types.
COMMON_FIELDS = {
    "name": text(template="{value!r} must be 1-64 letters, digits, '.', '_', '+' or '-' (it names the predictions "
                 "file)", pattern=SYSTEM_NAME.pattern, strip=False),
    "kind": Any,
    "limit": integer(1, "an integer >= 1 (or null for every test item)"),
}


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class EvalConfig:
    """A validated evaluation: what to score, where to write, how, and which systems."""

    test_file: Path
    output_dir: Path
    settings: EvalSettings
    systems: tuple[SystemSpec, ...]
    title: str = "Address completion evaluation"
    source: str = "<config>"


def suggestion(key: str, allowed: Sequence[str]) -> str:
    close = closest_match(key, allowed)
    return f" (did you mean {close!r}?)" if close else ""


def check_keys(mapping: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    """Unknown keys are errors naming the closest valid key."""
    for key in mapping:
        if key not in allowed:
            extra = " (API keys come from an environment variable: api_key_env)" if key == "api_key" else ""
            raise ConfigError(f"{where}: unknown key {key!r}{suggestion(str(key), allowed) or extra}; "
                              f"valid keys: {', '.join(allowed)}")


def parse_settings(raw: Any, where: str) -> EvalSettings:
    if raw is None:
        return EvalSettings()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
    values = validate_settings(raw, SETTING_RULES, where, yaml_number_hint)  # pydantic, our messages
    for key, value in values.items():
        if value is None and key != "limit":  # null means the default for limit only
            raise ConfigError(expected(key, value, SETTING_RULES[key], f"{where}.{key}", yaml_number_hint))
    return EvalSettings(**values)


def default_system_name(raw: dict[str, Any]) -> str:
    kind = raw.get("kind")
    if kind == "rules" and isinstance(raw.get("engine"), str):
        return raw["engine"]
    if kind == "prior" and raw.get("train_file"):
        return "city-frequency"
    return str(kind)


def parse_system(raw: Any, where: str) -> SystemSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with at least 'kind', got {type(raw).__name__}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: unknown system kind {kind!r}{suggestion(str(kind), list(KINDS))}; "
                          f"expected one of {', '.join(KINDS)}")
    cls = KINDS[kind]
    name = raw.get("name", default_system_name(raw))
    # One pydantic model per entry: the kind's options (System.OPTIONS) plus the keys every entry has.
    entry = cls.check_options({**raw, "name": name}, where, entry_model(cls.OPTIONS, COMMON_FIELDS))
    # The validated values (a choice in lower case, a path without surrounding spaces), as the entry gave them.
    options = {key: value for key, value in entry.model_dump(exclude_unset=True).items() if key not in COMMON_KEYS}
    return SystemSpec(name=name, kind=kind, options=options, where=where, limit=raw.get("limit"))


def config_from_dict(data: Any, source: str = "<config>") -> EvalConfig:
    """Validate a parsed YAML document (errors name ``source`` and the key).

    Every problem found is reported at once, one per line (test_file, settings and each system are checked
    independently), so a user fixes a config in one pass. Raises ConfigError."""
    if not isinstance(data, dict):
        kind = TOP_LEVEL_KINDS.get(type(data), f"a {type(data).__name__}")
        raise ConfigError(f"{source}: the top level is {kind}; {EXPECTED_MAPPING}")
    check_keys(data, TOP_KEYS, source)
    problems: list[str] = []

    def checked(parse: Any, *args: Any) -> Any:
        try:
            return parse(*args)
        except ConfigError as error:
            problems.append(str(error))
            return None

    for key in ("test_file", "output_dir", "systems"):
        if data.get(key) in (None, "", []):
            problems.append(f"{source}: missing {key!r}")
    test_file = Path(home_path(str(data.get("test_file"))))
    if data.get("test_file") not in (None, "") and test_file.is_dir():
        problems.append(f"{source}: test_file: {test_file} is a folder; name the JSON lines file with src and tgt "
                        f"inside it (e.g. {test_file / 'test.json'})")
    elif data.get("test_file") not in (None, "") and not test_file.is_file():
        problems.append(f"{source}: test_file: {test_file} not found (a JSON lines file with src and tgt)")
    settings = checked(parse_settings, data.get("settings"), f"{source}: settings")
    raw_systems = data.get("systems") or []
    if not isinstance(raw_systems, list):
        problems.append(f"{source}: systems: expected a list of systems, got {type(raw_systems).__name__}")
        raw_systems = []
    systems = [checked(parse_system, raw, f"{source}: systems[{index}]") for index, raw in enumerate(raw_systems)]
    seen: set[str] = set()
    for spec in filter(None, systems):
        if spec.name in seen:
            problems.append(f"{spec.where}.name: two systems are named {spec.name!r}; give each a unique 'name'")
        seen.add(spec.name)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} problems in {source}:\n  " + "\n  ".join(problems))
    title = data.get("title") or EvalConfig.title
    return EvalConfig(test_file=test_file, output_dir=Path(home_path(str(data["output_dir"]))),
                      settings=settings, systems=tuple(systems), title=str(title), source=source)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing a mapping that gives a key twice (yaml.YAMLError naming the line): YAML
    keeps the last one silently, and train's JSON config refuses the same mistake."""
    import yaml

    return yaml.load(text, Loader=_unique_key_loader())


@functools.lru_cache(maxsize=None)
def _unique_key_loader() -> type:
    """yaml.SafeLoader checking a mapping's own keys (a ``<<`` merge may still be overridden)."""
    import yaml  # lazily, as everywhere here: only evaluate reads YAML

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            first_lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    continue  # the base class names an unhashable key
                if key in first_lines:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (first on line {first_lines[key]}); YAML keeps only "
                                    "the last one silently, so give each key once", key_node.start_mark)
                first_lines[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def key_parts(assignment: str) -> list[str] | None:
    """The dotted key of ``KEY.PATH=VALUE``, blanks around each part dropped (``settings . limit`` is
    ``settings.limit``), or None without ``=`` or with an empty part (apply_override says which)."""
    if "=" not in assignment:
        return None
    parts = [part.strip() for part in assignment.split("=", 1)[0].split(".")]
    return parts if all(parts) else None


def apply_override(data: dict[str, Any], assignment: str) -> Any:
    """``KEY.PATH=VALUE`` (VALUE parsed as YAML, and returned). ``systems.NAME.key`` addresses a system by name or
    index."""
    import yaml

    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. settings.limit=100")
    text = assignment.split("=", 1)[1]
    parts = key_parts(assignment)
    if parts is None:  # settings.=3 replaced the whole settings mapping
        raise ConfigError(f"--set {assignment!r}: empty key or key part; write KEY.PATH=VALUE, e.g. settings.limit=100")
    try:
        value = load_yaml(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML ({exc})") from None
    target: Any = data
    for depth, part in enumerate(parts[:-1]):
        target = _descend(target, part, ".".join(parts[: depth + 1]), assignment)
    if not isinstance(target, dict):
        raise ConfigError(f"--set {assignment!r}: {'.'.join(parts[:-1])} is not a mapping")
    target[parts[-1]] = value
    return value


def system_index(systems: list[Any], part: str) -> int | None:
    """The index of the entry ``part`` names (its name, else its position), or None."""
    for index, item in enumerate(systems):
        if isinstance(item, dict) and item.get("name", default_system_name(item)) == part:
            return index
    return int(part) if part.isdigit() and int(part) < len(systems) else None


def override_check(data: dict[str, Any], assignment: str, source: str) -> Any:
    """A function ``check(where)`` validating, through the same models as the file, the part of ``data`` that
    ``assignment`` changes (the settings or one system entry), or None when the whole config's check covers it.

    Raises ConfigError (naming the --set) for a top-level key the config does not have."""
    parts = key_parts(assignment)
    if parts is None:
        return None  # apply_override says what is wrong with it
    if parts[0] not in TOP_KEYS:
        check_keys({parts[0]: None}, TOP_KEYS, f"{source}: --set {assignment!r}")
    if parts[0] == "settings" and len(parts) > 1:
        return lambda where: parse_settings(data.get("settings"), f"{where}: settings")
    systems = data.get("systems")
    if parts[0] == "systems" and len(parts) > 2 and isinstance(systems, list):
        index = system_index(systems, parts[1])
        if index is not None:
            return lambda where: parse_system(systems[index], f"{where}: systems[{index}]")
    return None


@dataclass(frozen=True)
class Override:
    """One ``KEY.PATH=VALUE`` assignment and how the command line gave it (``--set settings.limit=5``, ``--limit 5``),
    so that two writing the same key can both be named."""

    assignment: str
    spelling: str


def as_override(item: str | Override) -> Override:
    """A plain string is a ``--set``."""
    return item if isinstance(item, Override) else Override(item, f"--set {shlex.quote(item)}")


def override_key(data: dict[str, Any], assignment: str) -> tuple[str, ...] | None:
    """The key path ``assignment`` writes, resolved in ``data`` as it is now: a system given by name becomes its
    index (``systems.oracle`` and ``systems.0`` are one key, and a system renamed or a list replaced by an earlier
    override is found as that override left it). None for a malformed one (apply_override says what is wrong)."""
    parts = key_parts(assignment)
    if parts is None:
        return None
    node: Any = data
    for depth, part in enumerate(parts):
        if isinstance(node, list):
            index = system_index(node, part)
            if index is None:  # no such system: apply_override names it
                return tuple(parts)
            parts[depth], node = str(index), node[index]
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return tuple(parts)


def value_holds(node: Any, path: Sequence[str]) -> bool:
    """Whether the YAML value ``node`` (a mapping or a list of systems) explicitly has the key ``path`` inside (a
    system as its index or its name)."""
    for part in path:
        if isinstance(node, list):
            index = int(part) if part.isdigit() and int(part) < len(node) else system_index(node, part)
            if index is None:
                return False
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


@dataclass(frozen=True)
class Applied:
    """An override already applied: the key path it wrote (systems by index) and a copy of the value it wrote
    there (later overrides may add keys to the data, not to what this one gave)."""

    key: tuple[str, ...]
    value: Any
    given: Override


def check_given_once(key: tuple[str, ...] | None, given: Override, applied: Sequence[Applied], source: str) -> None:
    """Refuse ``given`` (about to write ``key``) when an applied override wrote the same key, or a value explicitly
    holding ``key``, or a key inside the mapping ``given`` replaces: the later would win, or the earlier be lost,
    silently. A mapping and then a key it lacks is fine. The key is named as ``given`` spells it (``systems.echo``,
    not its index), completed by the earlier's spelling when ``given`` replaces its mapping."""
    if key is None:
        return
    for earlier in applied:
        other = earlier.key
        if key[:len(other)] == other and (key == other or value_holds(earlier.value, key[len(other):])):
            named = key_parts(given.assignment) or []
        elif other[:len(key)] == key:  # the later replaces the mapping holding the earlier's key
            named = (key_parts(given.assignment) or []) + (key_parts(earlier.given.assignment) or [])[len(key):]
        else:
            continue
        raise ConfigError(f"{source}: {'.'.join(named)} is given twice: {earlier.given.spelling} "
                          f"and {given.spelling}; give it once")


def apply_overrides(data: dict[str, Any], overrides: Sequence[str | Override], source: str) -> None:
    """Apply each ``--set`` (or flag) in turn, refusing a key given twice (checked just before applying, against
    the data as the earlier overrides left it); one that makes a valid part of the config invalid is reported as
    that --set's fault, with the models' message (``eval.yaml: --set 'settings.batch_size=0': settings.batch_size:
    expected an integer >= 1, got 0``). Problems the file already had are left to the whole config's check."""
    applied: list[Applied] = []
    for given in (as_override(item) for item in overrides):
        assignment = given.assignment
        key = override_key(data, assignment)
        check_given_once(key, given, applied, source)
        check = override_check(data, assignment, source)
        valid_before = False
        if check is not None:
            try:
                check(source)
                valid_before = True
            except ConfigError:
                pass
        try:
            value = apply_override(data, assignment)
        except ConfigError as error:  # named like every other --set error: the file first
            raise ConfigError(f"{source}: {error}") from None
        if valid_before:
            check(f"{source}: --set {assignment!r}")
        if key is not None:
            applied.append(Applied(key, copy.deepcopy(value), given))


def _descend(node: Any, part: str, path: str, assignment: str) -> Any:
    if isinstance(node, list):
        index = system_index(node, part)
        if index is not None:
            return node[index]
        names = [item.get("name", default_system_name(item)) for item in node if isinstance(item, dict)]
        raise ConfigError(f"--set {assignment!r}: no system {part!r}{suggestion(part, names)}; "
                          f"systems: {', '.join(names)}")
    if not isinstance(node, dict):
        raise ConfigError(f"--set {assignment!r}: {path} is not a mapping")
    return node.setdefault(part, {})


def home_path(text: str) -> str:
    """``text`` with a leading ``~`` expanded (:func:`flags.user_path`); ConfigError for ``~name`` of no user here."""
    try:
        return user_path(text)
    except argparse.ArgumentTypeError as error:
        raise ConfigError(str(error)) from None


def load_config(path: str | os.PathLike, overrides: Sequence[str | Override] = (), *,
                only: Sequence[str] = ()) -> EvalConfig:
    """Read, override and validate a YAML evaluation config. ``overrides`` are ``--set`` assignments (or flags',
    as Override); ``only`` keeps the named systems."""
    import yaml

    path = Path(home_path(str(path)))  # like test_file and output_dir: --config=~/x leaves ~ to us
    if not path.is_file():
        raise ConfigError(f"evaluation config {path} is a folder; pass the YAML file (e.g. configs/eval_tiny.yaml)"
                          if path.is_dir() else f"evaluation config {path} not found")
    text = dataio.read_utf8_text(path)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        if getattr(exc, "problem", None) == "but found another document":  # yaml's own words are cut off
            raise ConfigError(f"{path} holds more than one YAML document (another starts on line {line}); expected "
                              f"one mapping{EXPECTED_MAPPING.split('mapping', 1)[1]}") from None
        raise DataError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path, line) from None
    if data is None or data == {}:  # one line, not one per missing key: the file is probably not the one meant
        raise ConfigError(f"{path} holds no mapping (null): {EXPECTED_MAPPING}" if data is None and holds_null(text)
                          else f"{path} is empty: {EXPECTED_MAPPING}")
    if isinstance(data, dict):
        apply_overrides(data, overrides, str(path))
        if only:
            data["systems"] = select_systems(data.get("systems"), only, str(path))
    return config_from_dict(data, str(path))


def holds_null(text: str) -> bool:
    """Whether a YAML document that loads as None says so (``~``, ``null``) rather than being empty."""
    import yaml

    node = yaml.compose(text, Loader=yaml.SafeLoader)
    return node is not None and node.value != ""


def select_systems(systems: Any, names: Sequence[str], source: str) -> list[Any]:
    """The raw entries of the named systems, so the others are not even validated (their model may not exist)."""
    entries = systems if isinstance(systems, list) else []
    available = [entry.get("name", default_system_name(entry)) for entry in entries if isinstance(entry, dict)]
    for name in names:
        if name not in available:
            raise ConfigError(f"--systems: no system {name!r}{suggestion(name, available)} in {source}; "
                              f"systems: {', '.join(available)}")
    return [entry for entry in entries if isinstance(entry, dict)
            and entry.get("name", default_system_name(entry)) in names]
