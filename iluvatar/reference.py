"""MkDocs hook: the stack reference's tables, generated from the config model at every build.

`docs/reference/stack.md` holds the prose and one marker per config key, a line
`<!-- stack-reference KEY -->` (`iluvatar:network`, ..., `secrets` for every secret key,
`pulumi:disable-default-providers`). Each marker becomes a heading and a table of every key
under it: its type, example and default read from the JSON Schema the model generates
(`stacks.schema.stack_schema()`, the same one editors read), what it means from
`docs/reference/keys.yaml` (one line per model field, by model and key).

It cannot drift: the build stops when a config key has no marker, a field has no line in
keys.yaml, or keys.yaml names a field the model does not have.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stacks.load import NAMESPACE, SECRETS, SECTIONS  # noqa: E402 - after the checkout is on the path
from stacks.schema import DISABLE_DEFAULT_PROVIDERS, stack_schema  # noqa: E402

PAGE = "reference/stack.md"
NOTES = ROOT / "docs" / "reference" / "keys.yaml"
MARKER = re.compile(r"^<!-- stack-reference (\S+) -->$", re.MULTILINE)
SECRETS_MARKER = "secrets"
# Where a model's keys are described in keys.yaml: config keys that are no model's field.
CONFIG = "config"


@dataclass(frozen=True)
class Row:
    """One key of a section: its path below the section, and the table's cells."""

    key: str
    type: str
    default: str
    meaning: str


def _defs() -> dict[str, Any]:
    return dict(stack_schema()["$defs"])


def _ref(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return str(ref).rsplit("/", 1)[-1] if ref else None


def _options(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The kinds of value a key takes, null (a key left out) aside."""
    choices = schema.get("anyOf") or schema.get("oneOf")
    if choices is None:
        return [schema]
    return [c for c in choices if c.get("type") != "null"]


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _code(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return f"`{text.removesuffix('...').strip()}`"


def _kind(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """What a value is, in the stack file's words, with the schema's example."""
    options = _options(schema)
    if len(options) > 1:
        return _either([_kind(o, defs) for o in options])
    s = options[0]
    if _ref(s) is not None:
        return "mapping (keys below)"
    if "enum" in s:
        return _either([f"`{v}`" for v in s["enum"]])
    kind = s.get("type")
    if kind == "array":
        items = s.get("items", {})
        least = s.get("minItems")
        if _ref(items) is not None:
            return "list of mappings (keys below)"
        if items.get("type") == "object":
            return "list of mappings (any keys)"
        text = f"list of {_kind(items, defs)}"
        return text + (f"; at least {least}" if least else "")
    if kind == "object":
        return "mapping (any keys)"
    if kind == "boolean":
        return "`true` or `false`"
    if kind == "integer":
        low, high = s.get("minimum"), s.get("maximum")
        if low is not None and high is not None:
            return f"whole number, {low} to {high}"
        return "whole number" + (f", at least {low}" if low is not None else "")
    text = str(s.get("description", "text"))
    text = re.sub(r"^(an?|the) ", "", text)
    examples = s.get("examples") or []
    if examples:
        text += ", e.g. " + ", ".join(f"`{e}`" for e in examples)
    return text


def _default(schema: Mapping[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in schema:
        # A default built by a factory: a model's own defaults, or an empty mapping.
        return "its keys' defaults" if any(_ref(o) for o in _options(schema)) else "`{}`"
    value = schema["default"]
    if value is None:
        return "unset"
    return _code(value)


def _nested(schema: Mapping[str, Any]) -> tuple[str, str] | None:
    """The model a key's value holds (or each item of its list holds), and the path step to it."""
    for option in _options(schema):
        if _ref(option) is not None:
            return str(_ref(option)), "."
        if option.get("type") == "array" and _ref(option.get("items", {})) is not None:
            return str(_ref(option["items"])), "[]."
    return None


def _rows(model: str, prefix: str, defs: Mapping[str, Any], notes: Mapping[str, Mapping[str, str]], seen: set[tuple[str, str]]) -> Iterator[Row]:
    """Every key of `model`, and of the models below it, depth first."""
    definition = defs[model]
    required = set(definition.get("required", ()))
    for key, schema in definition.get("properties", {}).items():
        seen.add((model, key))
        meaning = notes.get(model, {}).get(key)
        if meaning is None:
            raise PluginError(f"{NOTES.relative_to(ROOT)}: {model}.{key} has no line; say what it means under {model}:")
        yield Row(prefix + key, _kind(schema, defs), _default(schema, key in required), meaning.strip())
        below = _nested(schema)
        if below is not None:
            yield from _rows(below[0], prefix + key + below[1], defs, notes, seen)


def _table(rows: list[Row]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r.key}` | {r.type} | {r.default} | {r.meaning} |" for r in rows]
    return "\n".join(lines)


def _anchor(key: str) -> str:
    return key.split(":", 1)[1] if key.startswith(f"{NAMESPACE}:") else key.replace(":", "-")


def _section(key: str, config: Mapping[str, Any], defs: Mapping[str, Any], notes: Mapping[str, Any], seen: set[tuple[str, str]]) -> str:
    schema = config[key]
    name = key.split(":", 1)[1]
    section = SECTIONS.get(name) if key.startswith(f"{NAMESPACE}:") else None
    required = "Required" if (section is not None and section.required) or key == DISABLE_DEFAULT_PROVIDERS else "Optional"
    heading = f"## `{key}` {{#{_anchor(key)}}}"
    if section is None:
        # A key that is no model (Pulumi's own): one row, described by the schema and keys.yaml.
        meaning = notes.get(CONFIG, {}).get(key)
        if meaning is None:
            raise PluginError(f"{NOTES.relative_to(ROOT)}: {key} has no line; say what it means under {CONFIG}:")
        seen.add((CONFIG, key))
        row = Row(key, _kind(schema, defs), "**required**" if required == "Required" else "unset", meaning.strip())
        return f"{heading}\n\n**{required}**; a setting of Pulumi's own, not in the `{NAMESPACE}:` namespace.\n\n{_table([row])}\n"
    nested = _nested(schema)
    assert nested is not None, f"{key} is neither a model nor a list of models"
    model, step = nested
    intro = " ".join(str(defs[model].get("description", "")).split())
    if step == "[].":
        what = str(schema["description"])
        intro = f"{what[0].upper()}{what[1:]}, as a list; each item is {intro[0].lower()}{intro[1:]}"
    rows = list(_rows(model, "", defs, notes, seen))
    return f"{heading}\n\n**{required}.** {intro}\n\n{_table(rows)}\n"


def _secrets(config: Mapping[str, Any], notes: Mapping[str, Any], seen: set[tuple[str, str]]) -> str:
    rows = []
    for secret in SECRETS:
        key = f"{NAMESPACE}:{secret}"
        meaning = notes.get(CONFIG, {}).get(key)
        if meaning is None:
            raise PluginError(f"{NOTES.relative_to(ROOT)}: {key} has no line; say what it means under {CONFIG}:")
        seen.add((CONFIG, key))
        assert key in config, f"{key} is not in the schema"
        rows.append(Row(key, "secret", "unset", meaning.strip()))
    intro = (
        "Set only with `pulumi config set --secret KEY VALUE`, so the stack file holds ciphertext "
        "(`secure: v1:...`), never the value; a secret written in plain text is refused, and never echoed."
    )
    return f"## Secrets {{#secrets}}\n\n{intro}\n\n{_table(rows)}\n"


def reference(markdown: str) -> str:
    """The page with each marker replaced by its generated section; every config key once."""
    schema = stack_schema()
    config: Mapping[str, Any] = schema["properties"]["config"]["properties"]
    defs = schema["$defs"]
    notes: dict[str, Any] = yaml.safe_load(NOTES.read_text())
    seen: set[tuple[str, str]] = set()
    placed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == SECRETS_MARKER:
            placed.extend(f"{NAMESPACE}:{s}" for s in SECRETS)
            return _secrets(config, notes, seen)
        if key not in config:
            raise PluginError(f"{PAGE}: <!-- stack-reference {key} --> names no config key (known: {', '.join(config)})")
        placed.append(key)
        return _section(key, config, defs, notes, seen)

    out = MARKER.sub(replace, markdown)
    missing = [k for k in config if k not in placed]
    twice = sorted({k for k in placed if placed.count(k) > 1})
    if missing or twice:
        raise PluginError(f"{PAGE}: every config key needs one marker; missing: {missing or 'none'}, twice: {twice or 'none'}")
    stale = sorted(f"{m}.{k}" for m, keys in notes.items() for k in keys if (m, k) not in seen)
    if stale:
        raise PluginError(f"{NOTES.relative_to(ROOT)}: no such key in the model: {', '.join(stale)}; remove or rename them")
    return out


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    return reference(markdown) if page.file.src_uri == PAGE else markdown
