"""The stack reference (docs/reference/stack.md): its key tables and its version ranges, generated from the model.

The page is committed as Markdown, generated, so it reads the same on GitHub as on the site. It holds the prose and,
for each config key, a generated section between `<!-- stack-reference KEY -->` and `<!-- /stack-reference -->`
(`iluvatar:network`, ..., `secrets` for every secret key, `versions` for the releases each versioned part takes,
`pulumi:disable-default-providers`). `iluvatar reference --out docs/reference/stack.md` rewrites every section;
`--check` (and tests/test_docs.py, and the site's build through docs/hooks/stack_reference.py) fails while the
committed page is not what it would write.

A key's section is a heading and a table of every key under it: its type, example and default read from the JSON
Schema the model generates (`stacks.schema.stack_schema()`, the same one editors read), what it means from
`docs/reference/keys.yaml` (one line per model field, by model and key). The version ranges come from the tables
validation checks against (`stacks.rules.TALOS_KUBERNETES`, `stacks.day2.TALOS_UPGRADES`, `stacks.boards`,
`stacks.storage`), and the releases a new stack starts from from `stacks.releases`: what the page says a stack may
name is what validation takes.

It cannot drift: generating stops when a config key has no marker, a field has no line in keys.yaml, or keys.yaml
names a field the model does not have.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacks import releases
from stacks.boards import BOARDS
from stacks.chart_values import KEPT
from stacks.day2 import TALOS_UPGRADES
from stacks.gitops import ARGOCD_OLDEST
from stacks.load import NAMESPACE, SECRETS, SECTIONS
from stacks.model import ArgoCd, Cilium
from stacks.releases import ROOK_MIN_KUBERNETES
from stacks.rules import TALOS_KUBERNETES
from stacks.schema import DISABLE_DEFAULT_PROVIDERS, stack_schema
from stacks.versions import K3S_MIN_KUBERNETES, K3S_S3_CONFIG_SECRET

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "stack.md"
NOTES = ROOT / "docs" / "reference" / "keys.yaml"
REGENERATE = "iluvatar reference --out docs/reference/stack.md"
END = "<!-- /stack-reference -->"
# A marker and what was generated after it last time (nothing, the first time), up to its end.
MARKER = re.compile(r"^<!-- stack-reference (\S+) -->\n(?:.*?\n)??" + re.escape(END) + r"$", re.MULTILINE | re.DOTALL)
OPENING = re.compile(r"^<!-- stack-reference (\S+) -->$", re.MULTILINE)
SECRETS_MARKER = "secrets"
VERSIONS_MARKER = "versions"


class ReferenceError(Exception):
    """The page or keys.yaml does not match the model: one line saying which key and what to do."""


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
    if "const" in s:
        return f"`{s['const']}`"
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
            raise ReferenceError(f"{NOTES.relative_to(ROOT)}: {model}.{key} has no line; say what it means under {model}:")
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
    # GitHub shows `{#id}` after a heading as text: the short anchor (`#network`) is an element of its own.
    heading = f'<a id="{_anchor(key)}"></a>\n\n## `{key}`'
    if section is None:
        # A key that is no model (Pulumi's own): one row, described by the schema and keys.yaml.
        meaning = notes.get(CONFIG, {}).get(key)
        if meaning is None:
            raise ReferenceError(f"{NOTES.relative_to(ROOT)}: {key} has no line; say what it means under {CONFIG}:")
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
            raise ReferenceError(f"{NOTES.relative_to(ROOT)}: {key} has no line; say what it means under {CONFIG}:")
        seen.add((CONFIG, key))
        assert key in config, f"{key} is not in the schema"
        rows.append(Row(key, "secret", "unset", meaning.strip()))
    intro = (
        "Set only with `pulumi config set --secret KEY VALUE`, so the stack file holds ciphertext "
        "(`secure: v1:...`), never the value; a secret written in plain text is refused, and never echoed. A credential written "
        "where a service's own docs put it (`ntfy.token`, `email.password`, a connector's `clientSecret` or `bindPW`, "
        "`bmc.password`, an app secret's `value`, a URL's `user:password@` or `?token=`) is refused with the command that "
        "sets it in the key below it belongs in; a placeholder (`<value>`, `changeme`) is refused as one."
    )
    return f"## Secrets\n\n{intro}\n\n{_table(rows)}\n"


def _minor(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version[:2])


def versions() -> str:
    """The releases each versioned key takes, from the tables validation checks them against."""
    talos = sorted(TALOS_KUBERNETES)
    kubernetes = "; ".join(f"on Talos {_minor(t)}: 1.{low} to 1.{high}" for t, (low, high) in sorted(TALOS_KUBERNETES.items()))
    rows = [
        ("Talos", "iluvatar:arda.talosVersion", releases.TALOS, ", ".join(_minor(t) for t in talos)),
        (
            "Kubernetes",
            "iluvatar:arda.kubernetesVersion",
            releases.KUBERNETES,
            f"{kubernetes}; {_minor(ROOK_MIN_KUBERNETES)} or later with Ceph on Arda's data disks (Rook v1.20)",
        ),
        (
            "k3s",
            "iluvatar:ainur.k3sVersion",
            releases.K3S,
            f"Kubernetes {_minor(K3S_MIN_KUBERNETES)} or later (the Ainur's ValidatingAdmissionPolicy at "
            "admissionregistration.k8s.io/v1; sign-in and Longhorn need no more); "
            f"v{'.'.join(map(str, K3S_S3_CONFIG_SECRET))}+k3s1 or later with etcd snapshots to an S3 target",
        ),
        (
            "Cilium's chart",
            "iluvatar:arda.cilium.version",
            Cilium().version,
            "any release; its values checked against its own values schema at "
            + ", ".join(v for c, v in sorted(KEPT) if c == "cilium")
            + " ([Chart values](validation.md#chart-values))",
        ),
        (
            "Argo CD's chart",
            "iluvatar:gitops.argocd.version",
            ArgoCd().version,
            f"{'.'.join(map(str, ARGOCD_OLDEST))} or later (the first whose Redis takes the password Iluvatar gives it)",
        ),
    ]
    lines = [
        "## Versions",
        "",
        "The releases each versioned key takes, generated from the tables validation checks it against (`stacks.rules`,",
        "`stacks.day2`, `stacks.boards`, `stacks.storage`, `stacks.versions`). A new stack (`iluvatar init`) starts from the releases under",
        '"a new stack", the ones the shipped stacks run and the tests check the program against.',
        "",
        "| part | key | a new stack | validation takes |",
        "|---|---|---|---|",
        *(f"| {part} | `{key}` | `{new}` | {takes} |" for part, key, new, takes in rows),
        "",
        "A patch above the newest its minor had when this Iluvatar was made is refused (its images may not exist, and were",
        "never checked against this Iluvatar's pins): Talos "
        + ", ".join(row.newest for row in releases.TALOS_MINORS if row.target)
        + "; Kubernetes and k3s "
        + ", ".join(v for _, v in sorted(releases.KUBERNETES_NEWEST.items()))
        + f" (the Go module proxy on {releases.KUBERNETES_NEWEST_ASKED}), and no minor above 1.{max(releases.KUBERNETES_NEWEST)}.",
        "A k3s revision (`+k3sN`) k3s never released is refused too: each patch has `+k3s1` alone but "
        + ", ".join(
            f"{v} ({', '.join(f'+k3s{r}' for r in rs)})" if rs else f"{v} (none)"
            for v, rs in sorted(releases.K3S_REVISIONS.items(), key=lambda i: releases.release(i[0]))
        )
        + f" (k3s's release notes, k3s-io/docs `docs/release-notes/`, on {releases.K3S_REVISIONS_READ}). A number with a leading zero",
        "(`v1.35.01`) is refused in every version: no release tag has one.",
        "",
        "Against the last deployment, at preview: the Ainur's k3s moves forward one minor at a time and never back (its own",
        "revision, `+k3s2` to `+k3s1`, included); neither chart goes back to an older release; a running Arda moves only",
        "along Talos's own upgrade paths ([Upgrading Talos](../day2.md#upgrading-talos)), a minor at a time ([Across Talos",
        "minors](../day2.md#across-talos-minors)), and Kubernetes one minor at a time, after Talos, never with it, but where a",
        "Talos minor on the path needs a newer one:",
        "",
        "| to Talos | its installer takes machines running | not over machines running |",
        "|---|---|---|",
        *(f"| {_minor(t)} | {'.'.join(map(str, low))} or later | {_minor(high)} or later |" for t, (low, high) in sorted(TALOS_UPGRADES.items())),
        "",
        "These are machinery's bounds (`compatibility/talos1NN` at v1.14.1). Talos itself migrates a machine one minor at a",
        "time, from each minor's newest patch (its *Upgrading Talos* guide), so a roll two minors ahead is a path through the",
        "minor between ([Across Talos minors](../day2.md#across-talos-minors)), and a path starts at a minor this table holds:",
        f"Arda on an older one is first taken to {releases.TALOS_MINORS[0].newest} along Talos's path with talosctl.",
        "",
        "Boards with a first Talos release (older ones have no image for them): "
        + ", ".join(f"{b.description} (`{b.name}`) from {b.talos_since}" for b in BOARDS.values() if b.talos_since != "v1.0.0")
        + ".",
    ]
    return "\n".join(lines) + "\n"


def reference(markdown: str) -> str:
    """The page with each marker's section generated anew; every config key once."""
    schema = stack_schema()
    config: Mapping[str, Any] = schema["properties"]["config"]["properties"]
    defs = schema["$defs"]
    notes: dict[str, Any] = yaml.safe_load(NOTES.read_text())
    seen: set[tuple[str, str]] = set()
    placed: list[str] = []

    def section(key: str) -> str:
        if key == SECRETS_MARKER:
            placed.extend(f"{NAMESPACE}:{s}" for s in SECRETS)
            return _secrets(config, notes, seen)
        if key == VERSIONS_MARKER:
            return versions()
        if key not in config:
            raise ReferenceError(f"{PAGE.name}: <!-- stack-reference {key} --> names no config key (known: {', '.join(config)})")
        placed.append(key)
        return _section(key, config, defs, notes, seen)

    def replace(match: re.Match[str]) -> str:
        # Blank lines around the section: Python-Markdown (the site) ends a raw HTML block, the marker, only at one.
        return f"<!-- stack-reference {match.group(1)} -->\n\n{section(match.group(1))}\n{END}"

    out = MARKER.sub(replace, markdown)
    if len(OPENING.findall(markdown)) != len(MARKER.findall(markdown)):
        raise ReferenceError(f"{PAGE.name}: every <!-- stack-reference KEY --> needs its {END}, on a line of its own below it")
    missing = [k for k in config if k not in placed]
    twice = sorted({k for k in placed if placed.count(k) > 1})
    if missing or twice:
        raise ReferenceError(f"{PAGE.name}: every config key needs one marker; missing: {missing or 'none'}, twice: {twice or 'none'}")
    stale = sorted(f"{m}.{k}" for m, keys in notes.items() for k in keys if (m, k) not in seen)
    if stale:
        raise ReferenceError(f"{NOTES.relative_to(ROOT)}: no such key in the model: {', '.join(stale)}; remove or rename them")
    return out


def page() -> str:
    """docs/reference/stack.md as it should be: the committed page with every section generated anew."""
    return reference(PAGE.read_text(encoding="utf-8"))
