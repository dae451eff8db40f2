"""Typed dataclass configs -> argparse flags (open_lth style), and back to a config dict.

Every field becomes ``--field-name`` (or ``metadata['flag']``); nested dataclasses are flattened. Flags
default to "not given", so presets can fill what the user left out and explicit flags always win.
"""

from __future__ import annotations

import argparse
import copy
import math
import tomllib
import types
import typing
from dataclasses import MISSING, fields, is_dataclass

from .errors import UserError


def _unwrap_optional(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _what(tp) -> str:
    """``tp`` in words, as a message says what a value must be."""
    tp = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if origin is list:
        (elem,) = typing.get_args(tp) or (object,)
        return f"a list of {_what(elem).removeprefix('a ').removeprefix('an ')}s"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(tp, "a table")


def _fits(tp, value) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        (elem,) = typing.get_args(tp) or (object,)
        return isinstance(value, list) and all(_fits(elem, v) for v in value)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin is dict or tp is dict or is_dataclass(tp):
        return isinstance(value, dict)
    return True  # a type no config value is checked against


def check_types(cls, values: dict, where: str = "") -> None:
    """Refuse (one line naming the flag) a value of ``values`` (a dict shaped like the dataclass ``cls``) that
    is not of its field's type: bool is not an integer, a number is finite, a list holds its element type.
    ``where`` prefixes the message (the config file's name)."""
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    for key, value in values.items():
        f = by_name.get(key)
        if f is None:
            continue
        tp = hints[f.name]
        sub = _unwrap_optional(tp)
        if is_dataclass(sub) and isinstance(value, dict):
            check_types(sub, value, where)
        elif not _fits(tp, value):
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            none = " (or left out)" if _unwrap_optional(tp) is not tp else ""
            raise UserError(f"{where}{flag} must be {_what(tp)}{none}, got {value!r}")


def comma_list(elem: type, what: str):
    """An argparse type: a comma-separated list of ``elem`` (empty items skipped); a bad item is the error
    "expected comma-separated <what>"."""

    def parse(text: str) -> list:
        try:
            return [elem(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None

    return parse


_int_list = comma_list(int, "integers")


def section(parser: argparse.ArgumentParser, title: str, description: str | None = None):
    """The --help section of that title (made on first use; sections print in the order they were made, and an
    empty one not at all)."""
    for g in parser._action_groups:
        if g.title == title:
            return g
    return parser.add_argument_group(title, description)


def help_section(cls, name: str, parser: argparse.ArgumentParser) -> str:
    """The --help section of field ``name`` of ``cls``: the first of ``cls.HELP_SECTIONS`` (name or name prefix
    -> title) that matches, else ``cls.HELP_SECTION``, else the command's own options."""
    for key, title in getattr(cls, "HELP_SECTIONS", {}).items():
        if name == key or name.startswith(key + "_"):
            return title
    return getattr(cls, "HELP_SECTION", None) or f"{parser.prog.removeprefix('ticketlab ')} options"


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    """Each field a flag, listed in --help under its section (``help_section``); a field whose metadata names a
    ``group`` (a method's own option) is listed under that group's heading."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(cls):
        tp = _unwrap_optional(hints[f.name])
        if is_dataclass(tp):
            add_dataclass_flags(parser, tp, prefix=f"{prefix}{f.name}.")
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        dest = prefix + f.name
        default = f.default if f.default is not MISSING else None
        help_text = f.metadata.get("help", "")
        if default not in (None, MISSING) and not isinstance(default, bool) and f.default_factory is MISSING:
            help_text += f" (default: {default})"
        kw = dict(dest=dest, default=argparse.SUPPRESS, help=help_text)
        group = f.metadata.get("group")
        if group is not None:
            target = groups.get(group)
            if target is None:
                target = groups[group] = section(parser, f"{group} options", f"used with --method {group}")
        else:
            target = section(parser, help_section(cls, f.name, parser))
        if tp is bool:
            target.add_argument(flag, action="store_true", **kw)
        elif typing.get_origin(tp) is list and f.metadata.get("comma"):
            (elem,) = typing.get_args(tp)
            target.add_argument(
                flag, type=comma_list(elem, f"values for {flag}"), metavar=f.metadata.get("metavar", "A,B,..."), **kw
            )
        elif typing.get_origin(tp) is list and typing.get_args(tp) == (int,):
            target.add_argument(flag, type=_int_list, metavar="N,N,...", **kw)
        elif typing.get_origin(tp) is list:
            target.add_argument(flag, action="append", metavar=f.name.upper().rstrip("S"), **kw)
        else:
            target.add_argument(flag, type=tp, metavar=f.metadata.get("metavar", f.name.upper()), **kw)


def merge(base: dict, update: dict) -> dict:
    """Deep-merge ``update`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def given_flags(ns: argparse.Namespace, cls) -> dict:
    """The flags the user actually gave, as a nested dict shaped like ``cls``."""
    out: dict = {}
    for key, value in vars(ns).items():
        parts = key.split(".")
        if not _is_field_path(cls, parts):
            continue
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value
    return out


def _is_field_path(cls, parts: list[str]) -> bool:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    if parts[0] not in names:
        return False
    if len(parts) == 1:
        return True
    sub = _unwrap_optional(hints[parts[0]])
    return is_dataclass(sub) and _is_field_path(sub, parts[1:])


def flag_dests(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{flag name without dashes (as a config file's key): the dataclass path it sets ("train.lr")}."""
    out = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                out[opt[2:]] = action.dest
    return out


def dataclass_flag_dests(cls) -> dict[str, str]:
    """The flag names of a config class's fields and the paths they set (what a config file's keys are)."""
    tmp = argparse.ArgumentParser(add_help=False)
    add_dataclass_flags(tmp, cls)
    return flag_dests(tmp)


def config_file_values(path: str, dests: dict[str, str], allowed: set[str]) -> dict:
    """A TOML file's values (keys: flag names, with dashes or underscores) as a nested dict shaped like the
    config; an unknown key, or one that is not a setting of the run, is a one-line error naming it."""

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--config {path} is not valid TOML ({str(e).splitlines()[0]})") from None
    out: dict = {}
    for key, value in data.items():
        dest = dests.get(key.replace("_", "-"))
        if dest is None or dest not in allowed:
            raise UserError(f"--config {path}: unknown key {key!r}; keys are the command's flag names (--help)")
        node = out
        *parents, leaf = dest.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def config_to_toml(config: dict, dests: dict[str, str]) -> str:
    """A stored config as a TOML file of flag names (``--config`` reads it back): None values left out."""
    by_dest = {}
    for flag, dest in dests.items():
        by_dest.setdefault(dest, flag)

    def flat(d: dict, prefix: str = ""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield prefix + k, v

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(type(v).__name__)

    lines = []
    for dest, v in flat(config):
        if v is None or dest not in by_dest:
            continue
        lines.append(f"{by_dest[dest]} = {value(v)}")
    return "\n".join(lines) + "\n"
