"""From TOML text to frozen attrs classes, with errors a person can act on.

The schema lives in :mod:`smsgw.config`; this module is the generic machinery under it:

- :func:`substitute_env`: ``${NAME}`` in any string value is replaced by the environment
  variable ``NAME`` (``$${`` writes a literal ``${``); an unset variable is an error naming the
  key and the variable.
- :func:`make_converter`: a cattrs converter that is *strict* (TOML already has types, so
  ``window = "10"`` or ``port = 25.5`` are errors rather than silently converted), rejects
  unknown keys, and structures every attrs class field by field so that **every** problem is
  collected, each with its path, before anything is reported.
- :func:`error_messages`: walks cattrs' ``ClassValidationError`` tree into one line per problem,
  path first: ``providers[1].window: expected int >= 1, got 0``.
- Validators (:func:`at_least`, :func:`greater_than`, ...) that are plain attrs validators
  (objects built in code are checked too) whose messages read well in that format.

Why a class hook of our own instead of cattrs' generated one: cattrs runs attrs validators only
inside the class constructor, which stops at the first failure and reports it without the
field's name. Here each field is structured *and validated* on its own, so one run reports all
problems, each at its own path; the constructor then runs the same validators again (they pass)
and any cross-field check in ``__attrs_post_init__`` (reported at the class's path).
"""

from __future__ import annotations

import difflib
import enum
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from .durations import DurationError, format_duration, parse_duration

__all__ = [
    "SECRET",
    "STRUCTURE",
    "ConfigError",
    "Invalid",
    "Problems",
    "at_least",
    "at_most",
    "between",
    "describe",
    "duration_field",
    "error_messages",
    "greater_than",
    "latin1_max_length",
    "make_class_hook",
    "make_converter",
    "non_empty",
    "non_negative_duration",
    "positive_duration",
    "substitute_env",
]

#: Field metadata key: a function ``raw value -> structured value`` used instead of the type.
STRUCTURE: Final = "smsgw.structure"
#: Field metadata key: the value is a secret; error messages never quote it.
SECRET: Final = "smsgw.secret"

_MISSING_TEXT = "required key is missing"


class ConfigError(Exception):
    """A configuration that cannot be used. ``messages`` has one line per problem."""

    def __init__(self, source: str, messages: Sequence[str]) -> None:
        self.source = source
        self.messages = tuple(messages)
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.messages)
        head = f"{self.source}: {count} problem{'s' if count != 1 else ''}"
        return "\n  ".join([head, *self.messages])


class Invalid(ValueError):
    """One problem with one value; the text is shown as is after the value's path."""


class Problems(ValueError):
    """Several problems at once, each at a path relative to where this is raised.

    Raised by cross-field checks (``__attrs_post_init__``) and by custom structure functions, so
    that they too report everything they find in one go. An empty relative path means "here".
    """

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(_join(path, text) for path, text in self.problems))


def _join(path: str, text: str) -> str:
    return f"{path}: {text}" if path else text


# --- values in messages -------------------------------------------------------------------


def describe(value: object) -> str:
    """A value as a TOML reader would recognise it: ``"abc"``, ``true``, ``12``, a table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    return describe(value)


def _expected(what: str, value: object) -> Invalid:
    return Invalid(f"expected {what}, got {describe(value)}")


# --- validators ---------------------------------------------------------------------------
# attrs validators (called as ``validator(instance, attribute, value)``). They ignore the
# instance, so the class hook can run them on a field before the instance exists.

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _kind(value: object, what: str | None) -> str:
    if what is not None:
        return what
    return "int" if isinstance(value, int) and not isinstance(value, bool) else "a number"


def at_least(
    bound: float, *, fmt: Callable[[float], str] | None = None, what: str | None = None
) -> Validator:
    """``value >= bound``."""

    def check(_inst: object, _attr: attrs.Attribute[Any], value: float) -> None:
        if not value >= bound:
            show = fmt or repr
            raise Invalid(f"expected {_kind(value, what)} >= {show(bound)}, got {show(value)}")

    return check


def at_most(
    bound: float, *, fmt: Callable[[float], str] | None = None, what: str | None = None
) -> Validator:
    """``value <= bound``."""

    def check(_inst: object, _attr: attrs.Attribute[Any], value: float) -> None:
        if not value <= bound:
            show = fmt or repr
            raise Invalid(f"expected {_kind(value, what)} <= {show(bound)}, got {show(value)}")

    return check


def greater_than(
    bound: float, *, fmt: Callable[[float], str] | None = None, what: str | None = None
) -> Validator:
    """``value > bound``."""

    def check(_inst: object, _attr: attrs.Attribute[Any], value: float) -> None:
        if not value > bound:
            show = fmt or repr
            raise Invalid(f"expected {_kind(value, what)} > {show(bound)}, got {show(value)}")

    return check


def between(low: float, high: float) -> Validator:
    """``low <= value <= high``."""

    def check(_inst: object, _attr: attrs.Attribute[Any], value: float) -> None:
        if not low <= value <= high:
            raise Invalid(f"expected {_kind(value, None)} from {low!r} to {high!r}, got {value!r}")

    return check


def non_empty(_inst: object, _attr: attrs.Attribute[Any], value: Sized) -> None:
    """A string or a collection that is not empty."""
    if len(value) == 0:
        raise Invalid("must not be empty")


def latin1_max_length(limit: int, *, why: str) -> Validator:
    """A string of at most ``limit`` octets in Latin-1 (how the codec writes C-Octet strings).

    The message never quotes the value: these are often credentials.
    """

    def check(_inst: object, _attr: attrs.Attribute[Any], value: str) -> None:
        try:
            octets = len(value.encode("latin-1"))
        except UnicodeEncodeError:
            raise Invalid("expected Latin-1 text (SMPP C-Octet string)") from None
        if octets > limit:
            raise Invalid(f"expected at most {limit} characters ({why}), got {octets}")

    return check


def duration_field(default: float, *, validator: Validator | Sequence[Validator]) -> Any:
    """An attrs field of ``float`` seconds, written in the config as a duration (``"30s"``)."""
    return attrs.field(default=default, validator=validator, metadata={STRUCTURE: parse_duration})


def positive_duration() -> Validator:
    return greater_than(0, fmt=format_duration, what="a duration")


def non_negative_duration() -> Validator:
    return at_least(0, fmt=format_duration, what="a duration")


# --- environment substitution ---------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<close>\}?)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def substitute_env(
    document: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``document`` with ``${NAME}`` replaced in every string value, and the problems found as
    ``(path, problem)`` pairs.

    Keys are left alone; values that are not strings are returned unchanged. A string with a
    problem is left as written, so the rest of the document can still be checked.
    """
    errors: list[tuple[str, str]] = []

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str):
            return _substitute(value, path, environ, errors)
        if isinstance(value, Mapping):
            return {k: walk(v, _key_path(path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return walk(document, ""), errors


def _substitute(
    text: str, path: str, environ: Mapping[str, str], errors: list[tuple[str, str]]
) -> str:
    failed = False

    def replace(match: re.Match[str]) -> str:
        nonlocal failed
        if match.group(0) == "$${":
            return "${"
        body, close = match.group("body"), match.group("close")
        if not close or not _ENV_NAME.fullmatch(body):
            reference = match.group(0)
            errors.append(
                (
                    path,
                    f"invalid reference {_quote(reference)}: expected ${{NAME}}, NAME made of "
                    "letters, digits and _ (write $${ for a literal ${)",
                )
            )
            failed = True
            return reference
        if body not in environ:
            errors.append((path, f"environment variable {body} is not set"))
            failed = True
            return match.group(0)
        return environ[body]

    result = _REFERENCE.sub(replace, text)
    return text if failed else result


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_path(path: str, key: str) -> str:
    part = key if _BARE_KEY.fullmatch(key) else _quote(key)
    return f"{path}.{part}" if path else part


def _index_path(path: str, index: int | str) -> str:
    if isinstance(index, int):
        return f"{path}[{index}]"
    return _key_path(path, index)


# --- the converter ----------------------------------------------------------------------------


def _structure_int(value: object, _type: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected("int", value)
    return value


def _structure_float(value: object, _type: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _expected("a number", value)
    if not math.isfinite(value):
        raise _expected("a finite number", value)
    return float(value)


def _structure_str(value: object, _type: object) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value)
    return value


def _structure_bool(value: object, _type: object) -> bool:
    if not isinstance(value, bool):
        raise _expected("true or false", value)
    return value


def _structure_path(value: object, _type: object) -> Path:
    if not isinstance(value, str) or not value:
        raise _expected("a path (a non-empty string)", value)
    return Path(value)


def _is_homogeneous_tuple(type_: Any) -> bool:
    args = typing.get_args(type_)
    return typing.get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_enum(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, enum.Enum)


def make_converter() -> cattrs.Converter:
    """The strict converter described in the module docstring."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(Path, _structure_path)
    converter.register_structure_hook_factory(_is_enum, _enum_hook)
    converter.register_structure_hook_factory(
        _is_homogeneous_tuple, lambda t: _tuple_hook(converter, t)
    )
    converter.register_structure_hook_factory(attrs.has, lambda cl: make_class_hook(converter, cl))
    return converter


def _enum_hook(cl: type[enum.Enum]) -> Callable[[object, object], enum.Enum]:
    choices = ", ".join(describe(member.value) for member in cl)

    def structure(value: object, _type: object) -> enum.Enum:
        for member in cl:
            if type(member.value) is type(value) and member.value == value:
                return member
        raise _expected(f"one of {choices}", value)

    return structure


def _tuple_hook(
    converter: cattrs.Converter, type_: Any
) -> Callable[[object, object], tuple[Any, ...]]:
    item_type = typing.get_args(type_)[0]

    def structure(value: object, _type: object) -> tuple[Any, ...]:
        # A string is iterable too: without this check ``tags = "vip"`` would be ("v", "i", "p").
        if not isinstance(value, list | tuple):
            raise _expected("an array", value)
        items: list[Any] = []
        errors: list[Exception] = []
        for index, item in enumerate(value):
            try:
                items.append(converter.structure(item, item_type))
            except (ValueError, TypeError, cattrs.BaseValidationError) as exc:
                exc.__notes__ = [
                    *getattr(exc, "__notes__", []),
                    IterableValidationNote(f"Structuring item @ index {index}", index, item_type),
                ]
                errors.append(exc)
        if errors:
            raise IterableValidationError("While structuring an array", errors, tuple)
        return tuple(items)

    return structure


def make_class_hook(converter: cattrs.Converter, cl: type[Any]) -> Callable[[object, object], Any]:
    """The structure function of the attrs class ``cl`` (see the module docstring)."""
    attrs.resolve_types(cl)
    fields = [f for f in attrs.fields(cl) if f.init]
    names = [f.name for f in fields]

    def structure(value: object, _type: object) -> Any:
        if not isinstance(value, Mapping):
            raise _expected("a table", value)
        errors: list[Exception] = []
        unknown = {str(key) for key in value if key not in names}
        if unknown:
            errors.append(ForbiddenExtraKeysError(None, cl, unknown))
        kwargs: dict[str, Any] = {}
        for field in fields:
            if field.name not in value:
                if field.default is attrs.NOTHING:
                    errors.append(_noted(Invalid(_MISSING_TEXT), cl, field))
                continue
            try:
                kwargs[field.name] = _structure_field(converter, field, value[field.name])
            except (ValueError, TypeError, cattrs.BaseValidationError) as exc:
                errors.append(_noted(exc, cl, field))
        if errors:
            raise ClassValidationError(f"While structuring {cl.__name__}", errors, cl)
        try:
            return cl(**kwargs)
        except ValueError as exc:
            raise ClassValidationError(f"While structuring {cl.__name__}", [exc], cl) from None

    return structure


def _structure_field(converter: cattrs.Converter, field: attrs.Attribute[Any], raw: object) -> Any:
    if field.metadata.get(SECRET) and not isinstance(raw, str):
        # The strict str hook would quote the value; a secret's message names only its type.
        raise Invalid(f"expected a string, got {_type_name(raw)}")
    custom = field.metadata.get(STRUCTURE)
    if custom is not None:
        value = custom(raw)
    else:
        assert field.type is not None, "make_class_hook resolved every field's type"
        value = converter.structure(raw, field.type)
    if field.validator is not None:
        field.validator(None, field, value)
    return value


def _noted(exc: Exception, cl: type[Any], field: attrs.Attribute[Any]) -> Exception:
    exc.__notes__ = [
        *getattr(exc, "__notes__", []),
        AttributeValidationNote(
            f"Structuring class {cl.__qualname__} @ attribute {field.name}", field.name, field.type
        ),
    ]
    return exc


# --- messages ---------------------------------------------------------------------------------


def error_messages(exc: BaseException, path: str = "") -> list[str]:
    """One line per problem in ``exc`` (as raised by the converter), each ``path: problem``."""
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        messages: list[str] = []
        for sub, note in with_notes:
            messages += error_messages(sub, _key_path(path, note.name))
        for sub in without:
            messages += error_messages(sub, path)
        return messages
    if isinstance(exc, IterableValidationError):
        with_index, without = exc.group_exceptions()
        messages = []
        for sub, inote in with_index:
            messages += error_messages(sub, _index_path(path, inote.index))
        for sub in without:
            messages += error_messages(sub, path)
        return messages
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(exc.cl)]
        return [
            _join(_key_path(path, key), "unknown key" + _suggestion(key, known))
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, Problems):
        return [_join(_join_relative(path, rel), text) for rel, text in exc.problems]
    if isinstance(exc, DurationError | Invalid):
        return [_join(path, str(exc))]
    return [_join(path, f"{type(exc).__name__}: {exc}")]


def _join_relative(path: str, relative: str) -> str:
    if not relative:
        return path
    if not path or relative.startswith("["):
        return path + relative
    return f"{path}.{relative}"


def _suggestion(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f" (did you mean {_quote(close[0])}?)"
    return f" (known keys: {', '.join(known)})"
