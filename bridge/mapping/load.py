"""Reads a folder of mapping files and reports every problem in all of them at once.

The user runs `bridge validate` (or any command) and gets, in one pass, each problem with
`file:line`, the key path (`fields.top_speed_mph.transform[0]`) and what was expected, before
anything touches an API. pydantic's ValidationError is translated into MappingProblems here
and nowhere else. Files are read with ruamel.yaml's round-trip loader, which constructs only
plain data (it is safe) and keeps line numbers; the data is then copied into plain Python
values before pydantic sees it.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from bridge.errors import MappingError, MappingProblem
from bridge.mapping.model import FieldSpec, Mapping, RelationshipSpec, TargetSpec
from bridge.mapping.transforms import map_key, shorten

SUFFIXES = (".yaml", ".yml")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
Lines = dict[str, int]
_CORE_PREFIX = "tag:yaml.org,2002:"
_CORE_STR = "!!str"  # `!!str 12`: the one tag that still means plain text


def load_mappings(folder: Path) -> dict[str, Mapping]:
    """Every mapping in `folder`, by name; raises MappingError listing all problems."""
    files = sorted(p for p in folder.glob("*") if p.suffix in SUFFIXES and p.is_file()) if folder.is_dir() else []
    if not folder.is_dir():
        raise MappingError([MappingProblem(str(folder), "", "the folder does not exist; set BRIDGE_MAPPINGS to "
                                           "the folder of your mapping files (a relative path starts in the working "
                                           "directory), or write one there with `bridge mappings scaffold TYPE --out "
                                           "FILE`")])
    if not files:
        raise MappingError([MappingProblem(str(folder), "", "no mapping files (*.yaml, *.yml) found; "
                                           "create one per mapping or point BRIDGE_MAPPINGS at the right folder")])
    problems: list[MappingProblem] = []
    parsed: dict[str, tuple[Path, Mapping, Lines]] = {}
    for path in files:
        if path.stem in parsed:
            problems.append(MappingProblem(str(path), "", f"mapping {path.stem!r} is also defined in "
                                           f"{parsed[path.stem][0]}; keep one file per name"))
            continue
        mapping, lines, found = _parse_partial(path)
        problems.extend(found)
        if mapping is not None:
            parsed[path.stem] = (path, mapping, lines)
    names = {p.stem for p in files}
    for path, mapping, lines in parsed.values():
        problems.extend(_located(path, lines, p, m) for p, m in _target_problems(mapping, names))
    problems.extend(_duplicate_objects(parsed))
    if problems:
        raise MappingError(problems)
    return {name: parsed[name][1] for name in sorted(parsed)}


def load_mapping(path: Path, known: set[str] | None = None) -> Mapping:
    """One mapping file; with `known`, its mapping: targets must be among those names."""
    mapping, lines, problems = _parse_partial(path)
    if mapping is not None and known is not None:
        problems.extend(_located(path, lines, p, m) for p, m in _target_problems(mapping, known | {mapping.name}))
    if problems or mapping is None:
        raise MappingError(problems)
    return mapping


def _parse_partial(path: Path) -> tuple[Mapping | None, Lines, list[MappingProblem]]:
    """The mapping and every problem in the file; when it is invalid, what could be validated.

    The partial mapping carries only the fields, relationships and target that are valid on
    their own, so cross-key and cross-file checks still run and report in the same pass.
    """
    try:
        raw, lines = _read_yaml(path)
    except _FileProblem as exc:
        return None, {}, [exc.problem]
    problems: list[MappingProblem] = []
    if not _NAME.fullmatch(path.stem):
        problems.append(MappingProblem(str(path), "", f"file name {path.name!r} makes a bad mapping name; "
                                       "use letters, digits, '_' and '-' before .yaml"))
    if not isinstance(raw, dict):
        problems.append(_located(path, lines, "", f"expected a table of keys (source, target, fields, ...), "
                                                  f"got {type(raw).__name__}"))
        return None, lines, problems
    if "name" in raw:
        problems.append(_located(path, lines, "name", "unknown key 'name': a mapping is named by its file name"))
    data = {k: v for k, v in raw.items() if k != "name"}
    try:
        mapping = Mapping.model_validate({**data, "name": path.stem})
    except ValidationError as exc:
        problems.extend(_validation_problems(path, raw, lines, exc))
        mapping = _partial(path.stem, data)
    problems.extend(_located(path, lines, p, m) for p, m in mapping.consistency_problems())
    return mapping, lines, sorted(problems, key=_line_of)


def _line_of(problem: MappingProblem) -> int:
    _, _, line = problem.file.rpartition(":")
    return int(line) if line.isdigit() else 0


def _partial(name: str, data: dict[str, Any]) -> Mapping:
    """An unvalidated Mapping holding only the sections that validate on their own."""

    def valid(model: type[BaseModel], value: Any) -> Any:
        try:
            return model.model_validate(value)
        except (ValidationError, ValueError, TypeError):
            return None

    def section(key: str, model: type[BaseModel]) -> dict[str, Any]:
        items = data.get(key)
        if not isinstance(items, dict):
            return {}
        return {k: v for k, v in ((str(k), valid(model, v)) for k, v in items.items()) if v is not None}

    return Mapping.model_construct(
        name=name,
        target=valid(TargetSpec, data.get("target")),
        fields=section("fields", FieldSpec),
        relationships=section("relationships", RelationshipSpec),
    )


class _FileProblem(Exception):
    def __init__(self, problem: MappingProblem) -> None:
        self.problem = problem


def _read_yaml(path: Path) -> tuple[Any, Lines]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _FileProblem(MappingProblem(str(path), "", f"cannot read the file: {exc}")) from exc
    try:
        node = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        where = f"{path}:{line}" if line else str(path)
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise _FileProblem(MappingProblem(where, "", f"YAML syntax error: {what}")) from exc
    except YAMLError as exc:
        raise _FileProblem(MappingProblem(str(path), "", f"YAML syntax error: {exc}")) from exc
    lines: Lines = {}
    try:
        return _plain(node, "", lines), lines
    except _Tagged as exc:
        message = (f"YAML tag {exc.tag!r} is not supported: mapping files hold plain text, numbers, "
                   "lists and tables; remove the tag")
        raise _FileProblem(_located(path, lines, exc.key_path, message)) from None


class _Tagged(Exception):
    """A node with an explicit YAML tag, which no mapping key accepts."""

    def __init__(self, key_path: str, tag: str) -> None:
        self.key_path = key_path
        self.tag = tag


def _plain(node: Any, path: str, lines: Lines) -> Any:
    """Copies ruamel's round-trip nodes into plain values, noting each key's line."""
    tag = _explicit_tag(node)
    if tag == _CORE_STR and isinstance(node, TaggedScalar):
        return str(node.value)
    if tag is not None:
        raise _Tagged(path, tag)
    if isinstance(node, CommentedMap):
        out: dict[Any, Any] = {}
        for key, value in node.items():
            text = map_key(_scalar(key))  # keys are text; 1, true and null read as "1", "true", "null"
            sub = f"{path}.{text}" if path else text
            lines[sub] = node.lc.key(key)[0] + 1
            out[text] = _plain(value, sub, lines)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            sub = f"{path}[{index}]"
            where = node.lc.item(index)  # ruamel keeps no position for a tagged item
            if where is not None:
                lines[sub] = where[0] + 1
            items.append(_plain(value, sub, lines))
        return items
    return _scalar(node)


def _explicit_tag(node: Any) -> str | None:
    """The tag written in the file (`!foo`, `!!python/tuple`), or None for a plain node."""
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", None)
    if not isinstance(value, str):
        return None
    return "!!" + value.removeprefix(_CORE_PREFIX) if value.startswith(_CORE_PREFIX) else value


def _scalar(value: Any) -> Any:
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _located(path: Path, lines: Lines, key_path: str, message: str) -> MappingProblem:
    probe = key_path
    while probe and probe not in lines:
        probe = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", probe) if re.search(r"[.\[]", probe) else ""
    line = lines.get(probe)
    return MappingProblem(f"{path}:{line}" if line else str(path), key_path, message)


def _validation_problems(path: Path, raw: dict[str, Any], lines: Lines, exc: ValidationError) -> list[MappingProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        keys = _real_keys(raw, error["loc"], error["type"])
        problems.append(_located(path, lines, _format(keys), _message(error, keys)))
    return problems


def _real_keys(raw: Any, loc: tuple[Any, ...], kind: str) -> list[Any]:
    """The loc without pydantic's union and validator tags: only keys present in the file."""
    keys: list[Any] = []
    current = raw
    for index, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif kind == "missing" and index == len(loc) - 1:
            pass
        else:
            continue
        keys.append(part)
    return keys


def _format(keys: list[Any]) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


def _message(error: Any, keys: list[Any]) -> str:
    kind, message = error["type"], str(error["msg"])
    if kind == "missing":
        return f"missing required key {keys[-1]!r}" if keys else "missing required key"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(keys[:-1])
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {keys[-1]!r}{hint}"
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    return f"{message}; got {shorten(error.get('input'))}"


def _allowed_keys(keys: list[Any]) -> list[str]:
    """The keys the model at this key path accepts, for 'unknown key' messages."""
    annotation: Any = Mapping
    for key in keys:
        annotation = _step(annotation, key)
        if annotation is None:
            return []
    optional = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(optional) == 1:
        annotation = optional[0]  # an optional table (`verify:`): the keys of the table
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = annotation.model_fields
        return sorted((f.alias or n) for n, f in fields.items() if not (annotation is Mapping and n == "name"))
    return []


def _step(annotation: Any, key: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _step(args[0], key)
    if origin is dict:
        return args[1]
    if origin is list:
        return args[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if key in (name, info.alias):
                return info.annotation
    return None


def _target_problems(mapping: Mapping, names: set[str]) -> list[tuple[str, str]]:
    problems = []
    for key, spec in mapping.relationships.items():
        target = spec.mapping_target
        if target is not None and target not in names:
            problems.append((f"relationships.{key}.target", f"no mapping named {target!r}; expected one of: "
                             f"{', '.join(sorted(names))} (a mapping is named by its file name)"))
    return problems


def _duplicate_objects(parsed: dict[str, tuple[Path, Mapping, Lines]]) -> list[MappingProblem]:
    owners: dict[str, list[str]] = {}
    for name, (_, mapping, _) in parsed.items():
        if mapping.target is not None:
            owners.setdefault(mapping.target.object, []).append(name)
    problems = []
    for obj, names in owners.items():
        for name in names[1:]:
            path, _, lines = parsed[name]
            problems.append(_located(path, lines, "target.object", f"Zendesk object {obj!r} is already the target "
                                     f"of mapping {names[0]!r}; each object is written by one mapping"))
    return problems
