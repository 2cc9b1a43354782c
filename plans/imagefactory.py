"""Image Factory schematic IDs, as a `pulumi up` gets them.

The ID is not a hash of the text the program writes. The Talos provider (terraform-provider-talos v0.11.0,
behind pulumiverse-talos 0.8.1) decodes that text into image-factory's `schematic.Schematic` with
go.yaml.in/yaml/v4's `yaml.Unmarshal`, dropping unknown fields (pkg/talos/
talos_image_factory_schematic_resource.go:95), and image-factory's client POSTs the struct's own `Marshal` to
/schematics (pkg/client/client.go:67). Image Factory v1.1.0 decodes that body with `schematic.Unmarshal`
(KnownFields; internal/frontend/http/configuration.go:31) and answers `Schematic.ID()`: the SHA-256 of
`yaml.Marshal` of the struct (pkg/schematic/schematic.go:97). The provider stores that answer as the
resource's `id` (resource.go:108). So two texts that decode alike are one schematic: an empty text and
`customization: {}` are both the vanilla one, and our two-space indents become go-yaml's four.

This module is that path, in pure Python, for the struct image-factory v1.1.0 defines (every field:
overlay image, name and options of any YAML type; extraKernelArgs, meta with uint8 keys, systemExtensions,
bootloader, secureboot): libyaml's parser (go-yaml's is its port) gives the events, and the rest follows
go.yaml.in/yaml/v4 v4.0.0-rc.4 (the version image-factory v1.1.0 and the provider pin), internal/libyaml:
the composer (composer.go), tag resolution (resolver.go), the constructor into the struct (constructor.go),
and the representer and emitter with `yaml.Marshal`'s options (representer.go, emitter.go; options.go
DefaultOptions: indent 4, no compact sequences, unlimited width, legacy quoting). What go-yaml would accept
but this model does not follow (merge keys; keys Go leaves in random order) is refused with SchematicError, never
named wrongly. tools/talos-check/schematic-id runs the Go code itself; the tests hold the two equal on every
schematic the stacks make and on generated ones.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cmp_to_key
from typing import Any

import yaml

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SchematicError(ValueError):
    """The provider or Image Factory would refuse the schematic, or this model does not follow it."""


# ----------------------------------------------------------------------------------------------------------
# Go values inside `any` (Overlay.Options): what constructor.go stores for each resolved scalar.


@dataclass(frozen=True)
class GoInt:
    """A Go `int` (64 bits): what resolve() gives a plain integer."""

    value: int


@dataclass(frozen=True)
class GoUint:
    """A `uint64`: an integer above int64's range (resolver.go ParseUint)."""

    value: int


@dataclass(frozen=True)
class GoFloat:
    """A `float64`."""

    value: float


@dataclass(frozen=True)
class GoTime:
    """A `time.Time` from a timestamp, kept as time.RFC3339Nano formats it (representer.go timev)."""

    text: str


# A Go string is `str`, or `bytes` when it is not valid UTF-8 (only a !!binary scalar makes one).
GoString = str | bytes

# ----------------------------------------------------------------------------------------------------------
# The Schematic struct (image-factory v1.1.0 pkg/schematic/schematic.go:19-67), field by field, in order.


@dataclass(frozen=True)
class _Field:
    key: str
    type: Any
    omitempty: bool = False


@dataclass(frozen=True)
class _Struct:
    name: str
    fields: tuple[_Field, ...]

    def field(self, key: str) -> _Field | None:
        return next((f for f in self.fields if f.key == key), None)


@dataclass(frozen=True)
class _Slice:
    elem: Any


STR, UINT8, BOOL, BOOTLOADER, ANY, STRING_MAP = "string", "uint8", "bool", "BootloaderKind", "any", "map[string]any"
# talos machinery imager/imageropts BootloaderKind (an int enum with MarshalText/UnmarshalText, enumer -linecomment).
BOOTLOADERS = ("none", "dual-boot", "sd-boot", "grub")

_SECUREBOOT = _Struct("SecureBootCustomization", (_Field("includeWellKnownCertificates", BOOL, True),))
_EXTENSIONS = _Struct("SystemExtensions", (_Field("officialExtensions", _Slice(STR), True),))
_META = _Struct("MetaValue", (_Field("key", UINT8), _Field("value", STR)))
_CUSTOMIZATION = _Struct(
    "Customization",
    (
        _Field("extraKernelArgs", _Slice(STR), True),
        _Field("meta", _Slice(_META), True),
        _Field("systemExtensions", _EXTENSIONS, True),
        _Field("bootloader", BOOTLOADER, True),
        _Field("secureboot", _SECUREBOOT, True),
    ),
)
_OVERLAY = _Struct("Overlay", (_Field("image", STR), _Field("name", STR), _Field("options", STRING_MAP, True)))
SCHEMATIC = _Struct("Schematic", (_Field("overlay", _OVERLAY, True), _Field("customization", _CUSTOMIZATION)))


def _zero_struct(t: _Struct) -> dict[str, Any]:
    return {f.key: _zero(f.type) for f in t.fields}


def _zero(t: Any) -> Any:
    """A field's zero value: what a field the text leaves out (or sets null) keeps."""
    if isinstance(t, _Struct):
        return _zero_struct(t)
    return {STR: "", UINT8: 0, BOOL: False, BOOTLOADER: 0}.get(t) if isinstance(t, str) else None


def _is_zero(value: Any, t: Any) -> bool:
    """constructor.go isZero: what `omitempty` leaves out."""
    if isinstance(t, _Struct):
        return all(_is_zero(value[f.key], f.type) for f in t.fields)
    if isinstance(t, _Slice) or t == STRING_MAP:
        return not value
    return value in ("", b"", 0, False)


# ----------------------------------------------------------------------------------------------------------
# Tag resolution: resolver.go resolve().

_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP, _BINARY, _MERGE = "!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp", "!!binary", "!!merge"
_MAP, _SEQ = "!!map", "!!seq"
_RESOLVABLE = {"", _STR, _BOOL, _INT, _FLOAT, _NULL, _TIMESTAMP}
_NAN = GoFloat(math.nan)
_RESOLVE_MAP: dict[str, tuple[str, Any]] = {
    **dict.fromkeys(("true", "True", "TRUE"), (_BOOL, True)),
    **dict.fromkeys(("false", "False", "FALSE"), (_BOOL, False)),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), (_NULL, None)),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), (_FLOAT, _NAN)),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), (_FLOAT, GoFloat(math.inf))),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), (_FLOAT, GoFloat(-math.inf))),
    **dict.fromkeys(("-0", "-0.0"), (_FLOAT, GoFloat(-0.0))),
    "<<": (_MERGE, "<<"),
}
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# strconv.ParseFloat's decimal syntax (internal/strconv/atof.go readFloat, underscoreOK): the only floats
# resolve() hands it start with '.' or passed the pattern above, so infinities, NaN and hex never get here.
_DIGITS = r"[0-9](?:_?[0-9])*"
_GO_DECIMAL_FLOAT = re.compile(rf"[+-]?(?:{_DIGITS}(?:\.(?:{_DIGITS})?)?|\.{_DIGITS})(?:[eE][+-]?{_DIGITS})?")


def _hint(s: str) -> str:
    if s == "":
        return "N"
    c = s[0]
    if c in "+-":
        return "S"
    if "0" <= c <= "9":
        return "D"
    if c in "yYnNtTfFoO~<":
        return "M"
    return "." if c == "." else ""


def _parse_float(s: str) -> float | None:
    """strconv.ParseFloat(s, 64), or None on a syntax or range error (an overflow is ±Inf with ErrRange)."""
    if not _GO_DECIMAL_FLOAT.fullmatch(s):
        return None
    f = float(s)
    return None if math.isinf(f) else f


def _parse_uint(s: str) -> int | None:
    """strconv.ParseUint(s, 0, 64) on a string without underscores."""
    if not s:
        return None
    base = 10
    if s[0] == "0":
        prefix = s[1:2].lower()
        if len(s) >= 3 and prefix in ("b", "o", "x"):
            base, s = {"b": 2, "o": 8, "x": 16}[prefix], s[2:]
        else:
            base, s = 8, s[1:]
    n = 0
    for c in s:
        if "0" <= c <= "9":
            d = ord(c) - ord("0")
        elif c.isascii() and "a" <= c.lower() <= "z":
            d = ord(c.lower()) - ord("a") + 10
        else:
            return None
        if d >= base:
            return None
        n = n * base + d
        if n >= 1 << 64:
            return None
    return n


def _parse_int(s: str) -> int | None:
    """strconv.ParseInt(s, 0, 64) on a string without underscores."""
    negative = s[:1] == "-"
    magnitude = _parse_uint(s[1:] if s[:1] in ("+", "-") else s)
    if magnitude is None or magnitude > (1 << 63) - (0 if negative else 1):
        return None
    return -magnitude if negative else magnitude


def _digit(s: str, i: int) -> bool:
    return i < len(s) and "0" <= s[i] <= "9"


def _getnum(s: str, fixed: bool) -> tuple[int, str] | None:
    """time.getnum: one or two digits (exactly two if fixed)."""
    if not _digit(s, 0):
        return None
    if not _digit(s, 1):
        return None if fixed else (int(s[0]), s[1:])
    return int(s[:2]), s[2:]


def _days_in(month: int, year: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _parse_layout(s: str, separator: str | None, zone: bool) -> GoTime | None:
    """time.Parse of one of resolver.go's allowedTimestampFormats ("2006-1-2T15:4:5.999999999Z07:00",
    its lower-case t, "2006-1-2 15:4:5.999999999", "2006-1-2"), formatted as time.RFC3339Nano."""
    year, v = int(s[:4]), s[4:]
    if not v.startswith("-") or (got := _getnum(v[1:], False)) is None:
        return None
    month, v = got
    if not 1 <= month <= 12 or not v.startswith("-") or (got := _getnum(v[1:], False)) is None:
        return None
    day, v = got
    hour = minute = second = nsec = offset = 0
    if separator is not None:
        if separator == " ":  # time.skip: a space in the layout takes any run of spaces
            if v and v[0] != " ":
                return None
            v = v.lstrip(" ")
        elif not v.startswith(separator):
            return None
        else:
            v = v[1:]
        parts = []
        for i in range(3):
            if i and not v.startswith(":"):
                return None
            if (got := _getnum(v[1:] if i else v, False)) is None:
                return None
            number, v = got
            parts.append(number)
        hour, minute, second = parts
        if hour >= 24 or minute >= 60 or second >= 60:
            return None
        if len(v) >= 2 and v[0] in ".," and "0" <= v[1] <= "9":  # stdFracSecond9: any number of digits, nine kept
            n = 1
            while n < len(v) and "0" <= v[n] <= "9":
                n += 1
            nsec, v = int(v[1:10][: n - 1].ljust(9, "0")), v[n:]
        if zone:
            if v.startswith("Z"):
                v = v[1:]
            else:
                if len(v) < 6 or v[3] != ":":
                    return None
                hh, mm = _getnum(v[1:3], True), _getnum(v[4:6], True)
                if hh is None or mm is None or v[0] not in "+-" or hh[0] > 24 or mm[0] > 60:
                    return None
                offset = (hh[0] * 60 + mm[0]) * (1 if v[0] == "+" else -1)
                v = v[6:]
    if v or not 1 <= day <= _days_in(month, year):
        return None
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if nsec:
        text += "." + f"{nsec:09d}".rstrip("0")
    if offset == 0:
        return GoTime(text + "Z")
    sign = "+" if offset > 0 else "-"
    return GoTime(f"{text}{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}")


def _parse_timestamp(s: str) -> GoTime | None:
    """resolver.go parseTimestamp."""
    digits = len(s) - len(s.lstrip("0123456789"))
    if digits != 4 or len(s) == 4 or s[4] != "-":
        return None
    for separator, zone in (("T", True), ("t", True), (" ", False), (None, False)):
        if (t := _parse_layout(s, separator, zone)) is not None:
            return t
    return None


def _resolve(tag: str, s: str) -> tuple[str, Any]:
    """resolve(tag, in): the tag and Go value of a scalar; SchematicError where go-yaml fails."""
    if tag not in _RESOLVABLE:
        return tag, s
    rtag, out = _resolve_value(tag, s)
    if tag in ("", rtag, _STR, _BINARY):
        return rtag, out
    if tag == _FLOAT and rtag == _INT and isinstance(out, GoInt):
        return _FLOAT, GoFloat(float(out.value))
    raise SchematicError(f"cannot construct {rtag} `{s}` as a {tag}")


def _resolve_value(tag: str, s: str) -> tuple[str, Any]:
    hint = _hint(s)
    if hint and tag not in (_STR, _BINARY):
        if s in _RESOLVE_MAP:
            rtag, value = _RESOLVE_MAP[s]
            return rtag, GoFloat(float("nan")) if value is _NAN else value  # a NaN of its own: as a key, unequal to any
        if hint == ".":
            if (f := _parse_float(s)) is not None:
                return _FLOAT, GoFloat(f)
        elif hint in "DS":
            if tag in ("", _TIMESTAMP) and (t := _parse_timestamp(s)) is not None:
                return _TIMESTAMP, t
            plain = s.replace("_", "")
            if (i := _parse_int(plain)) is not None:
                return _INT, GoInt(i)
            if (u := _parse_uint(plain)) is not None:
                return _INT, GoUint(u)
            if _YAML_STYLE_FLOAT.fullmatch(plain) and (f := _parse_float(plain)) is not None:
                return _FLOAT, GoFloat(f)
    return _STR, s


def _short_tag(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


# ----------------------------------------------------------------------------------------------------------
# The composer: composer.go, from libyaml's events (the first document only, as Decode and Unmarshal read).


@dataclass(eq=False)
class _Node:
    kind: str  # scalar | mapping | sequence | alias
    tag: str = ""
    value: str = ""
    content: list[_Node] = field(default_factory=list)
    alias: _Node | None = None

    def short_tag(self) -> str:
        if self.kind == "alias" and self.alias is not None:
            return self.alias.short_tag()
        return self.tag


def _compose(text: str) -> _Node | None:
    """The first document's root node, or None for a stream without documents."""
    anchors: dict[str, _Node] = {}
    stack: list[_Node] = []
    root: _Node | None = None
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.DocumentEndEvent):
                break
            node: _Node
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    raise SchematicError(f"unknown anchor '{event.anchor}' referenced")
                node = _Node("alias", value=event.anchor, alias=anchors[event.anchor])
            elif isinstance(event, yaml.ScalarEvent):
                explicit = event.tag not in (None, "", "!")
                tag = _short_tag(event.tag) if explicit else (_STR if event.style else _resolve("", event.value)[0])
                node = _Node("scalar", tag, event.value)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                kind = "mapping" if isinstance(event, yaml.MappingStartEvent) else "sequence"
                explicit = event.tag not in (None, "", "!")
                node = _Node(kind, _short_tag(event.tag) if explicit else (_MAP if kind == "mapping" else _SEQ))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
                continue
            else:
                continue
            if getattr(event, "anchor", None) and not isinstance(event, yaml.AliasEvent):
                anchors[event.anchor] = node
            if stack:
                stack[-1].content.append(node)
            else:
                root = node
            if node.kind in ("mapping", "sequence"):
                stack.append(node)
    except yaml.YAMLError as e:
        raise SchematicError(f"not YAML: {e}") from None
    return root


# ----------------------------------------------------------------------------------------------------------
# The constructor: constructor.go, into the Schematic struct.

# base64.StdEncoding.DecodeString: whole quanta, padding only in the last one (its unused bits may be set).
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_UNSET = object()  # Construct returned false: the target keeps its zero value


class _Constructor:
    def __init__(self, known_fields: bool) -> None:
        self.known_fields = known_fields
        self.active: set[_Node] = set()

    def construct(self, n: _Node, t: Any) -> Any:
        if n.kind != "scalar" and t == BOOTLOADER:
            raise SchematicError(f"cannot construct {n.short_tag()} into {BOOTLOADER} (TextUnmarshaler)")
        if n.kind == "alias":
            assert n.alias is not None
            if n.alias in self.active:
                raise SchematicError(f"anchor '{n.value}' value contains itself")
            self.active.add(n.alias)
            try:
                return self.construct(n.alias, t)
            finally:
                self.active.discard(n.alias)
        if n.kind == "scalar":
            return self.scalar(n, t)
        if n.kind == "mapping":
            return self.mapping(n, t)
        return self.sequence(n, t)

    @staticmethod
    def _type_error(n: _Node, t: Any) -> SchematicError:
        what = t.name if isinstance(t, _Struct) else ("[]" + getattr(t.elem, "name", t.elem) if isinstance(t, _Slice) else t)
        return SchematicError(f"cannot construct {n.short_tag()} `{n.value[:10]}` into {what}")

    def scalar(self, n: _Node, t: Any) -> Any:
        resolved: Any
        if n.tag == _STR:  # indicatedString: quoted, block or !!str
            tag, resolved = _STR, n.value
        else:
            tag, resolved = _resolve(n.tag, n.value)
            if tag == _BINARY:
                data = str(resolved).replace("\r", "").replace("\n", "")  # base64.StdEncoding skips line breaks
                if not _BASE64.fullmatch(data):
                    raise SchematicError("!!binary value contains invalid base64 data")
                resolved = _go_string(base64.b64decode(data))
        if resolved is None:
            return None if t in (ANY, STRING_MAP) or isinstance(t, _Slice) else _UNSET
        if t == STR:
            return resolved if isinstance(resolved, (str, bytes)) else n.value
        if t == BOOTLOADER:
            text = resolved if tag == _BINARY else n.value
            if isinstance(text, str):
                for name in (text, text.lower()):
                    if name in BOOTLOADERS:
                        return BOOTLOADERS.index(name)
            raise SchematicError(f"{text!s} does not belong to BootloaderKind values")
        if t == ANY:
            return resolved
        if t == UINT8:
            if isinstance(resolved, GoInt) and 0 <= resolved.value <= 255:
                return resolved.value
            if isinstance(resolved, GoFloat) and 0 <= resolved.value <= 255 and resolved.value == math.floor(resolved.value):
                return int(resolved.value)  # a float64 that converts to the uint8 without loss
        if t == BOOL:
            if isinstance(resolved, bool):
                return resolved
            if resolved in ("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"):
                return True
            if resolved in ("n", "N", "no", "No", "NO", "off", "Off", "OFF"):
                return False
        raise self._type_error(n, t)

    def sequence(self, n: _Node, t: Any) -> Any:
        if not (isinstance(t, _Slice) or t == ANY):
            raise self._type_error(n, t)
        elem = t.elem if isinstance(t, _Slice) else ANY
        return [v for c in n.content if (v := self.construct(c, elem)) is not _UNSET]

    def mapping(self, n: _Node, t: Any) -> Any:
        pairs = list(zip(n.content[::2], n.content[1::2], strict=True))
        for i, (k, _) in enumerate(pairs):  # UniqueKeys: the same key node written twice
            for other, _ in pairs[i + 1 :]:
                if k.kind == other.kind and k.value == other.value:
                    raise SchematicError(f"mapping key {k.value!r} already defined")
        if any(k.kind == "scalar" and k.tag == _MERGE for k, _ in pairs):
            raise SchematicError("merge keys (<<) are not followed by this model of go-yaml")
        if isinstance(t, _Struct):
            return self.mapping_struct(pairs, t)
        if t == STRING_MAP or (t == ANY and all(k.short_tag() in (_STR, _MERGE) for k, _ in pairs)):
            key_type = STR
        elif t == ANY:
            key_type = ANY
        else:
            raise self._type_error(n, t)
        out: dict[Any, Any] = {}
        for k, v in pairs:
            key = self.construct(k, key_type)
            if key is _UNSET:
                continue
            if isinstance(key, (list, dict)):
                raise SchematicError(f"cannot use '{key!r}' as a map key")
            value = self.construct(v, ANY)
            out.pop(key, None)  # Go replaces the key too (mapassign's needkeyupdate): -0 over 0
            out[key] = value
        # keyList.Less leaves two timestamps, or NaN and another number, unordered: Go's marshal then follows
        # its map's random iteration, and Image Factory's ID with it.
        times = sum(isinstance(k, GoTime) for k in out)
        nan = any(isinstance(k, GoFloat) and math.isnan(k.value) for k in out)
        if times > 1 or (nan and sum(_key_float(k) is not None for k in out) > 1):
            raise SchematicError("two timestamps, or NaN and another number, as keys of one map: Image Factory's order of them is random")
        return out

    def mapping_struct(self, pairs: list[tuple[_Node, _Node]], t: _Struct) -> dict[str, Any]:
        out = _zero_struct(t)
        done: set[str] = set()
        for k, v in pairs:
            name = self.construct(k, STR)
            if name is _UNSET:
                continue
            f = t.field(name) if isinstance(name, str) else None
            if f is not None:
                if name in done:
                    raise SchematicError(f"field {name} already set in type {t.name}")
                done.add(name)
                if (value := self.construct(v, f.type)) is not _UNSET:
                    out[name] = value
            elif self.known_fields:
                raise SchematicError(f"field {name!s} not found in type schematic.{t.name}")
        return out


def _go_string(raw: bytes) -> GoString:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def decode(text: str, known_fields: bool) -> dict[str, Any]:
    """The Schematic struct as go-yaml decodes `text`: `yaml.Unmarshal` (the provider; unknown fields dropped,
    an empty stream is the zero struct) or, with known_fields, `schematic.Unmarshal` (Image Factory)."""
    root = _compose(text)
    if root is None:
        if known_fields:  # Decoder.Decode answers io.EOF
            raise SchematicError("EOF")
        return _zero_struct(SCHEMATIC)
    value = _Constructor(known_fields).construct(root, SCHEMATIC)
    return value if isinstance(value, dict) else _zero_struct(SCHEMATIC)  # a null document leaves the struct zero


# ----------------------------------------------------------------------------------------------------------
# The representer: representer.go, as events.

_PLAIN, _SINGLE, _DOUBLE, _LITERAL = "plain", "single", "double", "literal"


@dataclass(frozen=True)
class _Event:
    kind: str  # scalar | mapping-start | mapping-end | sequence-start | sequence-end
    value: str = ""
    tag: str = ""
    style: str = _PLAIN


# Map key order: representer.go keyList.Less, with reflect.Kind's numbers.
_BOOL_KIND, _INT_KIND, _UINT64_KIND, _FLOAT64_KIND, _INTERFACE_KIND, _STRING_KIND, _STRUCT_KIND = 1, 2, 11, 14, 20, 24, 25


def _kind(v: Any) -> int:
    if isinstance(v, bool):
        return _BOOL_KIND
    if isinstance(v, GoInt):
        return _INT_KIND
    if isinstance(v, GoUint):
        return _UINT64_KIND
    if isinstance(v, GoFloat):
        return _FLOAT64_KIND
    if isinstance(v, (str, bytes)):
        return _STRING_KIND
    return _INTERFACE_KIND if v is None else _STRUCT_KIND


def _key_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (GoInt, GoUint, GoFloat)):
        return float(v.value)
    return None


def _runes(s: GoString) -> list[str]:
    """[]rune(s): an invalid byte is one U+FFFD."""
    if isinstance(s, str):
        return list(s)
    out, i = [], 0
    while i < len(s):
        for width in (1, 2, 3, 4):
            try:
                out.append(s[i : i + width].decode("utf-8"))
                i += width
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append("\ufffd")
            i += 1
    return out


# unicode.Version of the Go that builds Image Factory and the provider (1.26): what IsLetter and IsDigit know.
GO_UNICODE = "15.0.0"


def _letter_digit(c: str) -> tuple[bool, bool]:
    """unicode.IsLetter and unicode.IsDigit (category L, category Nd) as Go's Unicode 15.0 tables answer.

    Python's tables are another Unicode version unless it is 3.12. A character whose class could differ
    between the two (unassigned here, or not assigned alike back in Unicode 3.2) is refused, not guessed."""
    category = unicodedata.category(c)
    if not c.isascii() and unicodedata.unidata_version != GO_UNICODE:
        old = unicodedata.ucd_3_2_0.category(c)
        if category == "Cn" or old[0] != category[0] or (old == "Nd") != (category == "Nd"):
            raise SchematicError(f"a map key with U+{ord(c):04X}: Go's Unicode {GO_UNICODE} orders it, and Python's is {unicodedata.unidata_version}")
    return category.startswith("L"), category == "Nd"


def _is_digit(c: str) -> bool:
    return _letter_digit(c)[1]


def _wrap64(n: int) -> int:
    return (n + (1 << 63)) % (1 << 64) - (1 << 63)


def _less(a: Any, b: Any) -> bool:
    ak, bk = _kind(a), _kind(b)
    af, bf = _key_float(a), _key_float(b)
    if af is not None and bf is not None:
        if af != bf:
            return af < bf
        if ak != bk:
            return ak < bk
        return bool(a.value < b.value) if not isinstance(a, bool) else (not a and b)
    if ak != _STRING_KIND or bk != _STRING_KIND:
        return ak < bk
    ar, br = _runes(a), _runes(b)
    digits = False
    for i in range(min(len(ar), len(br))):
        if ar[i] == br[i]:
            digits = _is_digit(ar[i])
            continue
        al, bl = _letter_digit(ar[i])[0], _letter_digit(br[i])[0]
        if al and bl:
            return ar[i] < br[i]
        if al or bl:
            return al if digits else bl
        an = bn = 0
        if ar[i] == "0" or br[i] == "0":
            j = i - 1
            while j >= 0 and _is_digit(ar[j]):
                if ar[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(ar) and _is_digit(ar[ai]):
            an = _wrap64(an * 10 + ord(ar[ai]) - ord("0"))
            ai += 1
        bi = i
        while bi < len(br) and _is_digit(br[bi]):
            bn = _wrap64(bn * 10 + ord(br[bi]) - ord("0"))
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ar[i] < br[i]
    return len(ar) < len(br)


def _compare(a: Any, b: Any) -> int:
    return -1 if _less(a, b) else (1 if _less(b, a) else 0)


def format_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), with go-yaml's names for the infinities and NaN."""
    if math.isnan(f):
        return ".nan"
    if math.isinf(f):
        return ".inf" if f > 0 else "-.inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    mantissa, _, exponent = repr(abs(f)).partition("e")  # Python's repr is the shortest round-trip too
    whole, _, fraction = mantissa.partition(".")
    raw = whole + fraction
    digits = raw.lstrip("0")
    dp = len(whole) + (int(exponent) if exponent else 0) - (len(raw) - len(digits))
    digits = digits.rstrip("0")
    sign = "-" if f < 0 else ""
    exp = dp - 1
    if exp < -4 or exp >= 6:  # shortest: %e when the exponent is below -4 or at least 6 (eprec = 6)
        tail = "." + digits[1:] if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{tail}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return f"{sign}{digits}{'0' * (dp - len(digits))}"
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


_BASE60_FLOAT = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


def _is_base60_float(s: str) -> bool:
    """representer.go isBase60Float: YAML 1.1's sexagesimal numbers, quoted for other parsers' sake."""
    return bool(_BASE60_FLOAT.fullmatch(s))


_OLD_BOOLS = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off", "Off", "OFF"}
# unicode.IsSpace: Latin-1's spaces, then the White_Space property.
_GO_SPACES = set("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


def _encode_base64(raw: bytes) -> str:
    """resolver.go encodeBase64: 70-character lines, each ended by a newline when there are several."""
    encoded = base64.b64encode(raw).decode()
    lines = len(encoded) // 70 + 1
    chunks = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
    return "".join(c + "\n" for c in chunks) if lines > 1 else encoded


class _Representer:
    def __init__(self) -> None:
        self.events: list[_Event] = []

    def string(self, s: GoString) -> None:
        tag = ""
        if isinstance(s, bytes):  # not UTF-8: !!binary, base64
            tag, text, plain = "tag:yaml.org,2002:binary", _encode_base64(s), True
        else:
            text = s
            plain = _resolve("", s)[0] == _STR and not (_is_base60_float(s) or s in _OLD_BOOLS or s == "<<")
        if "\n" in text:
            literal = len(text.encode()) >= 2 and any(c not in _GO_SPACES for c in text)
            style = _LITERAL if literal else _DOUBLE
        else:
            style = _PLAIN if plain else _DOUBLE  # QuoteLegacy: double quotes in the representer
        self.events.append(_Event("scalar", text, tag, style))

    def scalar(self, text: str) -> None:
        self.events.append(_Event("scalar", text))

    def value(self, v: Any, t: Any) -> None:
        if isinstance(t, _Struct):
            self.events.append(_Event("mapping-start"))
            for f in t.fields:
                if not (f.omitempty and _is_zero(v[f.key], f.type)):
                    self.string(f.key)
                    self.value(v[f.key], f.type)
            self.events.append(_Event("mapping-end"))
        elif isinstance(t, _Slice):
            self.events.append(_Event("sequence-start"))
            for item in v or ():
                self.value(item, t.elem)
            self.events.append(_Event("sequence-end"))
        elif t == STR:
            self.string(v)
        elif t == UINT8:
            self.scalar(str(v))
        elif t == BOOL:
            self.scalar("true" if v else "false")
        elif t == BOOTLOADER:
            self.string(BOOTLOADERS[v])  # MarshalText
        else:
            self.any(v)

    def any(self, v: Any) -> None:
        if v is None:
            self.scalar("null")
        elif isinstance(v, bool):
            self.scalar("true" if v else "false")
        elif isinstance(v, (GoInt, GoUint)):
            self.scalar(str(v.value))
        elif isinstance(v, GoFloat):
            self.scalar(format_float(v.value))
        elif isinstance(v, GoTime):
            self.scalar(v.text)
        elif isinstance(v, (str, bytes)):
            self.string(v)
        elif isinstance(v, list):
            self.events.append(_Event("sequence-start"))
            for item in v:
                self.any(item)
            self.events.append(_Event("sequence-end"))
        else:
            self.events.append(_Event("mapping-start"))
            for key in sorted(v, key=cmp_to_key(_compare)):
                self.any(key)
                # MapIndex finds no NaN key (NaN is unequal to itself): its value marshals as null.
                self.any(None if isinstance(key, GoFloat) and math.isnan(key.value) else v[key])
            self.events.append(_Event("mapping-end"))


# ----------------------------------------------------------------------------------------------------------
# The emitter: emitter.go, for block collections, empty flow ones, and the four scalar styles the
# representer asks for, with best_indent 4, CompactSequenceIndent false and no line width.

_BREAKS = "\r\n\x85\u2028\u2029"


def _printable(c: str) -> bool:
    """yamlprivate.go isPrintable (unicode output): tab and astral characters are not."""
    o = ord(c)
    return o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)


@dataclass
class _Analysis:
    value: str
    multiline: bool = False
    flow_plain: bool = True
    block_plain: bool = True
    single: bool = True
    block: bool = True


def _analyze(value: str) -> _Analysis:
    """emitter.go analyzeScalar."""
    if not value:
        return _Analysis(value, flow_plain=False, block=False)
    block_ind = flow_ind = value.startswith(("---", "..."))
    line_breaks = special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = break_space = space_break = False
    preceded_by_ws, previous_space, previous_break = True, False, False
    last = len(value) - 1
    for i, c in enumerate(value):
        followed_by_ws = i == last or value[i + 1] in " \t"
        if i == 0:
            if c in "#,[]{}&*!|>'\"%@`":
                flow_ind = block_ind = True
            elif c in "?:":
                flow_ind = True
                block_ind = block_ind or followed_by_ws
            elif c == "-" and followed_by_ws:
                flow_ind = block_ind = True
        elif c in ",?[]{}":
            flow_ind = True
        elif c == ":":
            flow_ind = True
            block_ind = block_ind or followed_by_ws
        elif c == "#" and preceded_by_ws:
            flow_ind = block_ind = True
        if c == "\t":
            tabs = True
        elif not _printable(c):
            special = True
        if c == " ":
            leading_space = leading_space or i == 0
            trailing_space = trailing_space or i == last
            break_space = break_space or previous_break
            previous_space, previous_break = True, False
        elif c in _BREAKS:
            line_breaks = True
            leading_break = leading_break or i == 0
            trailing_break = trailing_break or i == last
            space_break = space_break or previous_space
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_ws = c in " \t\0" or c in _BREAKS
    a = _Analysis(value, multiline=line_breaks)
    if leading_space or leading_break or trailing_space or trailing_break:
        a.flow_plain = a.block_plain = False
    if trailing_space:
        a.block = False
    if break_space or space_break or tabs or special:
        a.flow_plain = a.block_plain = a.single = False
    if space_break or special:
        a.block = False
    if line_breaks:
        a.flow_plain = a.block_plain = False
    if flow_ind:
        a.flow_plain = False
    if block_ind:
        a.block_plain = False
    return a


_ESCAPES = {0x00: "0", 0x07: "a", 0x08: "b", 0x09: "t", 0x0A: "n", 0x0B: "v", 0x0C: "f", 0x0D: "r", 0x1B: "e", 0x22: '"', 0x5C: "\\"}
_ESCAPES |= {0x85: "N", 0xA0: "_", 0x2028: "L", 0x2029: "P"}

_BLOCK_SEQUENCE_ITEM, _BLOCK_MAPPING_KEY = "block-sequence-item", "block-mapping-key"


class _Emitter:
    BEST_INDENT = 4

    def __init__(self, events: list[_Event]) -> None:
        self.events = events
        self.head = 0
        self.out: list[str] = []
        self.indent = -1
        self.indents: list[int] = []
        self.states: list[str] = []
        self.flow_level = 0
        self.column = 0
        self.whitespace = True
        self.indention = True
        self.mapping_context = self.simple_key_context = False
        self.analysis = _Analysis("")
        self.tag_handle = self.tag_suffix = ""

    # -- writing (put, putLineBreak, write, writeLineBreak, writeIndent, writeIndicator)
    def put(self, s: str) -> None:
        self.out.append(s)
        self.column += len(s)

    def put_break(self) -> None:
        self.out.append("\n")
        self.column = 0
        self.indention = True

    def write_break(self, c: str) -> None:
        if c == "\n":
            self.put_break()
        else:
            self.out.append(c)
            self.column = 0
            self.indention = True

    def write_indent(self) -> None:
        indent = max(self.indent, 0)
        if not self.indention or self.column > indent or (self.column == indent and not self.whitespace):
            self.put_break()
        self.put(" " * max(indent - self.column, 0))
        self.whitespace = True

    def indicator(self, s: str, need_whitespace: bool, is_whitespace: bool, is_indention: bool) -> None:
        if need_whitespace and not self.whitespace:
            self.put(" ")
        self.put(s)
        self.whitespace = is_whitespace
        self.indention = self.indention and is_indention

    def increase_indent(self, flow: bool) -> None:
        self.indents.append(self.indent)
        if self.indent < 0:
            self.indent = self.BEST_INDENT if flow else 0
        elif self.states[-1] == _BLOCK_SEQUENCE_ITEM:
            self.indent += 2  # the first indent inside a sequence skips "- "
        else:
            self.indent = self.BEST_INDENT * ((self.indent + self.BEST_INDENT) // self.BEST_INDENT)

    def pop_indent(self) -> None:
        self.indent = self.indents.pop()

    # -- events
    def emit(self) -> str:
        self.states.append("document-end")
        self.node(mapping=False, simple_key=False)
        self.write_indent()  # emitDocumentEnd, implicit: no "..."
        if self.head != len(self.events):
            raise AssertionError("events left after the document")
        return "".join(self.out)

    def next(self) -> _Event:
        event = self.events[self.head]
        self.head += 1
        return event

    def peek(self, offset: int = 0) -> str:
        return self.events[self.head + offset].kind if self.head + offset < len(self.events) else ""

    def node(self, mapping: bool, simple_key: bool) -> None:
        """emitNode for the event at the head."""
        self.mapping_context, self.simple_key_context = mapping, simple_key
        kind = self.peek()
        if kind == "scalar":
            self.scalar(self.next())
        elif kind in ("mapping-start", "sequence-start"):
            end = kind.replace("start", "end")
            self.next()
            if self.flow_level > 0 or self.peek() == end:  # checkEmptyMapping / checkEmptySequence: `{}`, `[]`
                self.empty_flow("{}" if kind == "mapping-start" else "[]", end)
            elif kind == "mapping-start":
                self.block_mapping()
            else:
                self.block_sequence()
        else:
            raise AssertionError(f"unexpected {kind}")
        self.states.pop()

    def empty_flow(self, brackets: str, end: str) -> None:
        if self.peek() != end:
            raise AssertionError("the representer never asks for a non-empty flow collection")
        self.next()
        self.indicator(brackets[0], True, True, False)
        self.increase_indent(flow=True)
        self.pop_indent()
        if brackets == "[]" and self.column == 0:
            self.write_indent()
        self.indicator(brackets[1], False, False, False)

    def block_sequence(self) -> None:
        self.increase_indent(flow=False)  # compact_seq is false (CompactSequenceIndent)
        while self.peek() != "sequence-end":
            self.write_indent()
            self.indicator("-", True, False, True)
            self.states.append(_BLOCK_SEQUENCE_ITEM)
            self.node(mapping=False, simple_key=False)
        self.next()
        self.pop_indent()

    def block_mapping(self) -> None:
        self.increase_indent(flow=False)
        while self.peek() != "mapping-end":
            self.write_indent()
            if self.simple_key():
                self.states.append("block-mapping-simple-value")
                self.node(mapping=True, simple_key=True)
                self.indicator(":", False, False, False)
            else:
                self.indicator("?", True, False, True)
                self.states.append("block-mapping-value")
                self.node(mapping=True, simple_key=False)
                self.write_indent()
                self.indicator(":", True, False, True)
            self.states.append(_BLOCK_MAPPING_KEY)
            self.node(mapping=True, simple_key=False)
        self.next()
        self.pop_indent()

    def simple_key(self) -> bool:
        """checkSimpleKey: a one-line scalar of at most 128 bytes (tag included), or an empty collection."""
        event = self.events[self.head]
        if event.kind == "scalar":
            handle, suffix = self._tag(event)
            return not _analyze(event.value).multiline and len(handle) + len(suffix) + len(event.value.encode()) <= 128
        end = event.kind.replace("start", "end")
        return self.peek(1) == end

    @staticmethod
    def _tag(event: _Event) -> tuple[str, str]:
        """analyzeTag against the default directives ("!" and "!!")."""
        if not event.tag:
            return "", ""
        if event.tag.startswith("!"):
            return "!", event.tag[1:]
        prefix = "tag:yaml.org,2002:"
        return ("!!", event.tag[len(prefix) :]) if event.tag.startswith(prefix) else ("", event.tag)

    def scalar(self, event: _Event) -> None:
        self.analysis = a = _analyze(event.value)
        self.tag_handle, self.tag_suffix = self._tag(event)
        style = event.style
        if self.simple_key_context and a.multiline:
            style = _DOUBLE
        if style == _PLAIN:
            if (self.flow_level > 0 and not a.flow_plain) or (self.flow_level == 0 and not a.block_plain):
                style = _SINGLE  # QuoteLegacy: single quotes in the emitter
            if not a.value and (self.flow_level > 0 or self.simple_key_context):
                style = _SINGLE
        if style == _SINGLE and not a.single:
            style = _DOUBLE
        if style == _LITERAL and (not a.block or self.flow_level > 0 or self.simple_key_context):
            style = _DOUBLE
        if self.tag_handle:  # processTag
            if not self.whitespace:
                self.put(" ")
            self.put(self.tag_handle)
            self.whitespace = self.indention = False
            if self.tag_suffix:
                self._tag_content(self.tag_suffix)
        self.increase_indent(flow=True)
        {_PLAIN: self.plain, _SINGLE: self.single, _DOUBLE: self.double, _LITERAL: self.literal}[style](a.value)
        self.pop_indent()

    def _tag_content(self, value: str) -> None:
        for byte in value.encode():
            c = chr(byte)
            if c in ";/?:@&=+$,_.~*'()[]" or (c.isascii() and (c.isalnum() or c in "_-")):
                self.put(c)
            else:
                self.put(f"%{byte:02X}")
        self.whitespace = self.indention = False

    def plain(self, value: str) -> None:
        if value and not self.whitespace:
            self.put(" ")
        self._lines(value, quote=False)
        if value:
            self.whitespace = False
        self.indention = False

    def _lines(self, value: str, quote: bool) -> None:
        """The body of writePlainScalar / writeSingleQuotedScalar (no width, so no folding at spaces)."""
        if not any(c in _BREAKS for c in value):  # one line: written as it is, a quote doubled
            self.put(value.replace("'", "''") if quote else value)
            if value.strip(" "):
                self.indention = False
            return
        breaks = False
        for c in value:
            if c in _BREAKS:
                if not breaks and c == "\n":
                    self.put_break()
                self.write_break(c)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                if quote and c == "'":
                    self.put("'")
                self.put(c)
                if c != " ":
                    self.indention = False
                breaks = False

    def single(self, value: str) -> None:
        self.indicator("'", True, False, False)
        self._lines(value, quote=True)
        self.indicator("'", False, False, False)
        self.whitespace = self.indention = False

    def double(self, value: str) -> None:
        self.indicator('"', True, False, False)
        bom = value.startswith("\ufeff")  # isBOM(value, i) looks at the value's first bytes, whatever i is
        for c in value:
            o = ord(c)
            if bom or not _printable(c) or c in _BREAKS or c in '"\\':
                if o in _ESCAPES:
                    self.put("\\" + _ESCAPES[o])
                elif o <= 0xFF:
                    self.put(f"\\x{o:02X}")
                elif o <= 0xFFFF:
                    self.put(f"\\u{o:04X}")
                else:
                    self.put(f"\\U{o:08X}")
            else:
                self.put(c)
        self.indicator('"', False, False, False)
        self.whitespace = self.indention = False

    def literal(self, value: str) -> None:
        self.indicator("|", True, False, False)
        if value[0] == " ":  # writeBlockScalarHints: an indentation indicator
            self.indicator(str(self.BEST_INDENT), False, False, False)
        if value[-1] not in _BREAKS:
            chomp = "-"
        elif len(value) == 1 or value[-2] in _BREAKS:
            chomp = "+"
        else:
            chomp = ""
        if chomp:
            self.indicator(chomp, False, False, False)
        self.put_break()
        self.whitespace = True
        breaks = True
        for c in value:
            if c in _BREAKS:
                self.write_break(c)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(c)
                self.indention = False
                breaks = False


def marshal(schematic: dict[str, Any]) -> str:
    """`yaml.Marshal` of the Schematic struct (go.yaml.in/yaml/v4 v4.0.0-rc.4): Image Factory's canonical text."""
    representer = _Representer()
    representer.value(schematic, SCHEMATIC)
    return _Emitter(representer.events).emit()


def posted(text: str) -> str:
    """The body the Talos provider POSTs to /schematics for the program's `text`: its decode, re-marshaled."""
    return marshal(decode(text, known_fields=False))


def named(text: str) -> tuple[str, str]:
    """The body the provider POSTs for `text`, and the ID Image Factory answers for that body."""
    body = posted(text)
    canonical = marshal(decode(body, known_fields=True))  # the factory's own decode of the body, marshaled again
    return body, hashlib.sha256(canonical.encode()).hexdigest()


def schematic_id(text: str) -> str:
    """The ID Image Factory answers for the program's schematic `text`, as the Talos provider stores it."""
    return named(text)[1]


__all__: list[str] = ["SchematicError", "decode", "format_float", "marshal", "named", "posted", "schematic_id"]
