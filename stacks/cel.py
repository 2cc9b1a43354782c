"""A Talos volume's CEL disk selector (provisioning.diskSelector.match) read as Talos reads it, against what the
inventory tells of a disk.

Talos evaluates the selector against every disk of the machine (internal/app/machined/pkg/controllers/block/internal/
volumes/locate.go:247-263 at v1.14.0-rc.1) in its DiskLocator environment: cel-go's standard library (cel.NewEnv),
`disk` (a block.DiskSpec), `system_disk`, glob(pattern, string) and the uint constants KiB..EiB and kB..EB
(pkg/machinery/cel/celenv/celenv.go:35-63,248-274). Before that it type-checks the selector when it reads the config
(pkg/machinery/config/types/block/volume_config.go:436-437, pkg/machinery/cel/cel.go:65-80): one cel-go's checker
refuses, or whose type is not bool, is a config Talos refuses, and so is it here (RefusedError). Talos's go.mod pins
cel-go v0.31.0; its files are cited at 14f6746a, the newest commit stored here.

The inventory tells only part of a disk (its name), so the value of an expression is three-valued: True, False or
UNKNOWN, where UNKNOWN means "it may be either on the real disk". The subset read here is what selectors are written
with; the rest of CEL is unreadable (UnreadableError), which the caller treats as "may select any disk".
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from stacks.disk_ids import by_id_name, glob, namespace_links, nvme_serial_runs, nvme_wwid_of_link, nvme_wwid_parts, udev_spelling


class UnreadableError(ValueError):
    """An expression outside the subset read here (Talos may take it), or one Talos refuses (RefusedError)."""


class RefusedError(UnreadableError):
    """An expression Talos refuses when it reads the config: a syntax or type error of cel-go's parser or checker, or a
    type other than bool. `fix` is the selector written so that it type-checks, where one is certain; `advice` what to do
    where none is."""

    def __init__(self, reason: str, fix: str | None = None, advice: str | None = None) -> None:
        super().__init__(reason)
        self.fix = fix
        self.advice = advice  # what to do where no fix is certain, when it is not to write it in Talos's environment


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class Partial:
    """A string known only in part: it starts with `prefix` (if set) and is none of `not_values`."""

    prefix: str = ""
    not_values: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Links:
    """disk.symlinks, known in part: `known` are links the disk has; `other(x)` is True when link x is provably
    another disk's (False when that cannot be told)."""

    known: frozenset[str]
    other: Callable[[str], bool]


Value = object  # str, int, float, bool, Partial, Links, list, or UNKNOWN


@dataclass(frozen=True)
class Disk:
    """What the inventory tells of one disk: a field absent from `fields` is unknown."""

    fields: dict[str, Value]
    system_disk: bool


# block.DiskSpec's fields and their CEL types (api/resource/definitions/block/block.proto:82-106 at v1.14.0-rc.1: uint64
# is CEL's uint, repeated string a list); a field outside these is a checker error, and Talos refuses the config.
FIELD_TYPES = {
    "size": "uint",
    "io_size": "uint",
    "sector_size": "uint",
    "readonly": "bool",
    "model": "string",
    "serial": "string",
    "modalias": "string",
    "wwid": "string",
    "bus_path": "string",
    "sub_system": "string",
    "transport": "string",
    "rotational": "bool",
    "cdrom": "bool",
    "dev_path": "string",
    "pretty_size": "string",
    "secondary_disks": "list(string)",
    "uuid": "string",
    "symlinks": "list(string)",
    "firmware_version": "string",
}
DISK_FIELDS = frozenset(FIELD_TYPES)

# celenv.go:253-273: the unit constants, each a uint.
UNITS = {
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "PiB": 1024**5,
    "EiB": 1024**6,
    "kB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "PB": 1000**5,
    "EB": 1000**6,
}

# What cel.NewEnv declares beyond what is read here (cel-go common/stdlib/standard.go, parser/macro.go): an expression
# calling one is valid in Talos, so it is unreadable here, not refused. Any other name is undeclared there: Talos
# refuses it (the strings extension's lowerAscii, split, ... are no part of DiskLocator, celenv.go:36-57).
_STANDARD = frozenset(
    {
        "bool",
        "bytes",
        "double",
        "duration",
        "dyn",
        "filter",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getFullYear",
        "getHours",
        "getMilliseconds",
        "getMinutes",
        "getMonth",
        "getSeconds",
        "has",
        "map",
        "string",
        "timestamp",
        "type",
    }
)

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)

# cel-go's lexer (parser/gen/CEL.g4 at 14f6746a): whitespace is ASCII tab, space, CR, LF and form feed alone (175), a
# digit 0-9 alone (146), a hex literal's prefix `0x` in lowercase (185-191), and a single-quoted string holds no raw CR
# or LF (193-199); any other character (a no-break space, a vertical tab, an Arabic-Indic digit) is a token recognition
# error, and Talos refuses the selector. A `//` comment runs to the end of its line (COMMENT, 176), as in a YAML block
# selector.
_SPACE = r"(?:[\t\n\f\r ]|//[^\n]*)*"
_TOKEN = re.compile(
    _SPACE
    + r"""(?:
    (?P<str>[rR]?(?:'''(?:[^\\]|\\.)*?'''|\"\"\"(?:[^\\]|\\.)*?\"\"\"|'(?:[^'\\\n\r]|\\.)*'|"(?:[^"\\\n\r]|\\.)*"))
    |(?P<bytes>[bB][rR]?(?:'[^'\n\r]*'|"[^"\n\r]*"))
    |(?P<num>(?:[0-9]*\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|0x[0-9a-fA-F]+[uU]?|[0-9]+[uU]?)
    |(?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\],.?:*/%+-])
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE | re.DOTALL | re.ASCII,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    i = 0
    while i < len(text):
        if re.fullmatch(_SPACE, text[i:]):
            break
        m = _TOKEN.match(text, i)
        if m is None or m.lastgroup is None:
            rest = re.sub(f"^{_SPACE}", "", text[i:])
            j = len(text) - len(rest)
            c = rest[0]
            if c == "\v" or not c.isascii():
                # A space or a digit of another script (a no-break space pasted from a web page) is written as its ASCII one.
                ascii_ = " " if c.isspace() else str(unicodedata.decimal(c)) if unicodedata.decimal(c, None) is not None else None
                raise RefusedError(
                    f"{rest[:20]!r} is no CEL token: {c!r} (U+{ord(c):04X}) is no character of cel-go's lexer outside a string "
                    "(its whitespace is ASCII space, tab, CR, LF and form feed, its digits 0-9 alone); write a plain space or an "
                    "ASCII digit there",
                    None if ascii_ is None else text[:j] + ascii_ + text[j + 1 :],
                )
            raise RefusedError(f"{rest.rstrip(' ')[:20]!r} is no CEL token (cel-go's parser stops there)")
        if m.lastgroup == "num" and re.match(r"[A-Za-z_]", text[m.end() :]):
            word = re.match(r"[A-Za-z0-9_]*", text[m.end() :])
            written = m["num"] + (word[0] if word else "")
            upper = written[:2] == "0X"
            said = f" (a hex number is written 0x{written[2:]})" if upper else ""
            start = m.start("num")
            raise RefusedError(
                f"{written} is no CEL number: cel-go's lexer reads {m['num']} and then a name, a syntax error{said}",
                text[:start] + "0x" + text[start + 2 :] if upper else None,
            )
        if m.lastgroup == "bytes":
            raise UnreadableError(f"{m['bytes']!r} is not read (a bytes literal)")
        out.append(_Tok(m.lastgroup, m[m.lastgroup], m.start(m.lastgroup), m.end()))
        i = m.end()
    return out


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", "'": "'", '"': '"', "`": "`", "?": "?"}


def _unescape(token: str) -> str:
    """A string literal's value, as cel-go's parser reads it (parser/unescape.go:26-195): r'' raw, ''' and \"\"\" quoting,
    the escapes \\a \\b \\f \\n \\r \\t \\v \\\\ \\' \\" \\` \\?, \\x and \\X of two hex digits, \\u of four, \\U of eight, and
    an octal \\[0-3][0-7][0-7]; any other escape is a syntax error."""
    raw = token[0] in "rR"
    body = token[1:] if raw else token
    body = body[3:-3] if body[:3] in ("'''", '"""') and len(body) >= 6 else body[1:-1]
    if raw or "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1] if i + 1 < len(body) else ""
        width = {"x": 2, "X": 2, "u": 4, "U": 8}.get(e)
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif width is not None and re.fullmatch(r"[0-9a-fA-F]+", digits := body[i + 2 : i + 2 + width]) and len(digits) == width:
            point = int(digits, 16)
            if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
                raise RefusedError(f"{token} holds \\{e}{digits}, no Unicode code point")
            out.append(chr(point))
            i += 2 + width
        elif e in "0123" and e and re.fullmatch(r"[0-7]{2}", body[i + 2 : i + 4]):
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise RefusedError(f"{token} holds \\{e}, no escape CEL knows (write \\\\ for a backslash)")
    return "".join(out)


@dataclass
class Result:
    """An expression's value on one disk, and the disk fields whose being unknown left it UNKNOWN."""

    value: Value
    unknown: set[str] = field(default_factory=set)


Node = Callable[[Disk, set[str]], Value]


@dataclass(frozen=True)
class _T:
    """A parsed expression: its function of a Disk, its CEL type, where it is in the text, and whether it is a
    non-negative int literal (which `u` after it makes the uint CEL would need)."""

    node: Node
    type: str
    start: int
    end: int
    int_literal: bool = False
    depth: int = 0  # cel-go's parser's visit depth of it (parser.go:377-425): ?:, relations, arithmetic, selects and calls


def _unify(a: str, b: str) -> str | None:
    """The type two operands of ==, ?: or a list's items share, as cel-go's checker unifies them (dyn with any)."""
    if a == b or b == "dyn":
        return a
    if a == "dyn":
        return b
    if a.startswith("list(") and b.startswith("list("):
        inner = _unify(a[5:-1], b[5:-1])
        return None if inner is None else f"list({inner})"
    return None


def _article(t: str) -> str:
    return ("an " if t == "int" else "a ") + t


# What each arithmetic operator takes (cel-go common/stdlib/standard.go:148-265): two operands of one type.
_ARITH_TYPES = {
    "+": ("int", "uint", "double", "string"),
    "-": ("int", "uint", "double"),
    "*": ("int", "uint", "double"),
    "/": ("int", "uint", "double"),
    "%": ("int", "uint"),
}
# <, <=, >, >=: one type each side (standard.go:266-494); cel-go's checker filters out the int/uint/double mixes
# unless the environment enables CrossTypeNumericComparisons (checker/env.go:36-65,95-98), which DiskLocator does not.
_ORDERED = ("int", "uint", "double", "string", "bool")
_RELATIONS = ("==", "!=", "<", ">", "<=", ">=", "in")
_MAX_DEPTH = 250


class _Parser:
    """A recursive-descent parser of CEL's grammar (cel-spec/doc/langdef.md, "Syntax") for the subset read here, typed as
    cel-go's checker types it; it builds a function of a Disk."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.scope: dict[str, tuple[str, dict[str, Value]]] = {}
        self.globs: list[str] = []  # each glob() pattern written as a string literal
        self.depth = 0  # how deep in expr the parser is (cel-go's recursion limit)

    def peek(self) -> str | None:
        return self.toks[self.i].text if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> _Tok:
        if self.i >= len(self.toks):
            raise RefusedError("it ends early (cel-go's parser finds no end to it)")
        tok = self.toks[self.i]
        if want is not None and tok.text != want:
            raise RefusedError(f"{want!r} expected, {tok.text!r} found (a syntax error to cel-go's parser)")
        self.i += 1
        return tok

    def src(self, t: _T) -> str:
        return self.text[t.start : t.end].strip()

    def mismatch(self, op: str, a: _T, b: _T, why: str = "", name: str | None = None) -> RefusedError:
        """cel-go's "found no matching overload" (checker/errors.go:40), with the fix where it is an int beside a uint."""
        said = f"found no matching overload for '{name or f'_{op}_'}' applied to '({a.type}, {b.type})'"
        about = f"in `{self.src(a)} {op} {self.src(b)}`, {self.src(a)} is {_article(a.type)} and {self.src(b)} {_article(b.type)}"
        fix = None
        if {a.type, b.type} == {"int", "uint"}:
            int_side = a if a.type == "int" else b
            if int_side.int_literal:
                fix = self.text[: int_side.end] + "u" + self.text[int_side.end :]
            elif not self.src(int_side).startswith("-"):
                fix = self.text[: int_side.start] + f"uint({self.src(int_side)})" + self.text[int_side.end :]
            why = ", and CEL converts no number to another (Talos's size units and disk.size are uint, celenv.go:270-273)"
        return RefusedError(f"{said}: {about}{why}", fix)

    def parse(self) -> _T:
        t = self.ternary()
        if self.i != len(self.toks):
            raise RefusedError(f"{self.toks[self.i].text!r} is not CEL there (a syntax error to cel-go's parser)")
        if t.depth > _MAX_DEPTH:
            # parser.go:377-425,993-1001: each ?:, relation, arithmetic operator, select and method call it visits is a level
            # deeper, and past 250 the parser stops; a chain of operators nests one level for each (CEL.g4:36-45).
            raise RefusedError(
                f"it nests {t.depth} operators, selects and calls deep, more than cel-go's parser visits: max recursion depth "
                f"exceeded ({_MAX_DEPTH}, parser.go:54-56)",
                advice="write it with fewer operators in a row (a list and `in`, or `&&` and `||`, which nest no deeper)",
            )
        return t

    def ternary(self) -> _T:
        # cel-go's parser counts each rule's nesting and stops past 250 (parser/parser.go:54-56,203-221): a selector's
        # expr nests once more in each ( ), [ ], call argument and ?: else branch, so 249 parentheses are the most it reads.
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise RefusedError(
                f"it nests deeper than cel-go's parser reads: expression recursion limit exceeded: {_MAX_DEPTH} (parser.go:54-56)",
                advice="write it with fewer parentheses",
            )
        try:
            return self.conditional()
        finally:
            self.depth -= 1

    def conditional(self) -> _T:
        cond = self.or_()
        if self.peek() != "?":
            return cond
        self.take("?")
        yes = self.or_()
        self.take(":")
        no = self.ternary()
        if cond.type not in ("bool", "dyn"):
            raise RefusedError(f"`{self.src(cond)}` before ? is {_article(cond.type)}, not a bool")
        kind = _unify(yes.type, no.type)
        if kind is None:
            raise RefusedError(
                f"found no matching overload for '_?_:_' applied to '({cond.type}, {yes.type}, {no.type})': the two sides of ?: are "
                f"{_article(yes.type)} and {_article(no.type)}, not one type"
            )
        c, y, n = cond.node, yes.node, no.node

        def pick(d: Disk, u: set[str]) -> Value:
            v = c(d, u)
            if v is True:
                return y(d, u)
            if v is False:
                return n(d, u)
            a, b = y(d, u), n(d, u)
            return a if _same(a, b) else UNKNOWN

        return _T(pick, kind, cond.start, no.end, depth=1 + max(cond.depth, yes.depth, no.depth))

    def logical(self, op: str, parts: list[_T]) -> None:
        for p in parts:
            if p.type not in ("bool", "dyn"):
                raise RefusedError(f"`{self.src(p)}` is {_article(p.type)}: {op} takes bools (found no matching overload for '_{op}_')")

    def or_(self) -> _T:
        parts = [self.and_()]
        while self.peek() == "||":
            self.take()
            parts.append(self.and_())
        if len(parts) == 1:
            return parts[0]
        self.logical("||", parts)
        nodes = [p.node for p in parts]
        # CEL's || is commutative over errors and unknowns: true if any part is (cel-spec langdef.md, "Logical Operators").
        return _T(lambda d, u: _or([n(d, u) for n in nodes]), "bool", parts[0].start, parts[-1].end, depth=max(p.depth for p in parts))

    def and_(self) -> _T:
        parts = [self.relation()]
        while self.peek() == "&&":
            self.take()
            parts.append(self.relation())
        if len(parts) == 1:
            return parts[0]
        self.logical("&&", parts)
        nodes = [p.node for p in parts]
        return _T(lambda d, u: _not(_or([_not(n(d, u)) for n in nodes])), "bool", parts[0].start, parts[-1].end, depth=max(p.depth for p in parts))

    def relation(self) -> _T:
        # CEL.g4:36-39: relation is left-recursive, one precedence for all its operators, so `a > b == c` is `(a > b) == c`.
        left = self.addition()
        while self.peek() in _RELATIONS:
            op = self.take().text
            left = self.relate(op, left, self.addition())
        return left

    def relate(self, op: str, left: _T, right: _T) -> _T:
        a, b = left.node, right.node
        depth = 1 + max(left.depth, right.depth)
        if op == "in":
            if right.type != "dyn" and not right.type.startswith("list("):
                raise RefusedError(f"`{self.src(right)}` is {_article(right.type)}: in takes a list")
            item = right.type[5:-1] if right.type.startswith("list(") else "dyn"
            if _unify(left.type, item) is None:
                raise self.mismatch("in", left, _T(b, f"list({item})", right.start, right.end), name="@in")
            return _T(lambda d, u: _in(a(d, u), b(d, u)), "bool", left.start, right.end, depth=depth)
        if op in ("==", "!="):
            if _unify(left.type, right.type) is None:
                raise self.mismatch(op, left, right)
            neg = op == "!="
            return _T(lambda d, u: _not(_equal(a(d, u), b(d, u))) if neg else _equal(a(d, u), b(d, u)), "bool", left.start, right.end, depth=depth)
        if _unify(left.type, right.type) not in (*_ORDERED, "dyn"):
            raise self.mismatch(op, left, right)
        compare: Callable[[object, object], bool] = {
            "<": lambda x, y: x < y,
            ">": lambda x, y: x > y,
            "<=": lambda x, y: x <= y,
            ">=": lambda x, y: x >= y,
        }[op]

        def order(d: Disk, u: set[str]) -> Value:
            x, y = a(d, u), b(d, u)
            if not _known(x) or not _known(y):
                return UNKNOWN
            if isinstance(x, bool) != isinstance(y, bool) or isinstance(x, str) != isinstance(y, str):
                return UNKNOWN  # a dyn of another type: CEL's runtime error, no disk's true nor false
            return compare(x, y)

        return _T(order, "bool", left.start, right.end, depth=depth)

    def addition(self) -> _T:
        left = self.multiplication()
        while self.peek() in ("+", "-"):
            op = self.take().text
            left = self.arith(op, left, self.multiplication())
        return left

    def multiplication(self) -> _T:
        left = self.unary()
        while self.peek() in ("*", "/", "%"):
            op = self.take().text
            left = self.arith(op, left, self.unary())
        return left

    def arith(self, op: str, left: _T, right: _T) -> _T:
        kind = _unify(left.type, right.type)
        if kind is None or (kind != "dyn" and kind not in _ARITH_TYPES[op]):
            raise self.mismatch(op, left, right)
        if kind in ("string", "dyn") and op == "+":
            raise UnreadableError(f"+ of {_article(kind)} is not read here")
        if kind == "dyn":
            raise UnreadableError(f"{op} of a dyn is not read here")
        return _T(_arith(left.node, right.node, op, kind), kind, left.start, right.end, depth=1 + max(left.depth, right.depth))

    def unary(self) -> _T:
        # CEL.g4:46-50: a run of `!` or of `-` before a member is one rule, no deeper however long, so it is read in a loop.
        ops: list[_Tok] = []
        while self.peek() in ("!", "-"):
            ops.append(self.take())
        inner = self.member()
        for tok in reversed(ops):
            inner = self.negate(tok, inner)
        return inner

    def negate(self, tok: _Tok, inner: _T) -> _T:
        if tok.text == "!":
            if inner.type not in ("bool", "dyn"):
                raise RefusedError(f"`{self.src(inner)}` is {_article(inner.type)}: ! takes a bool (found no matching overload for '!_')")
            n = inner.node
            return _T(lambda d, u: _not(n(d, u)), "bool", tok.start, inner.end, depth=inner.depth)
        if inner.type not in ("int", "double"):
            # cel-go has no negation of a uint (standard.go:221-232: int and double only).
            raise RefusedError(
                f"found no matching overload for '-_' applied to '({inner.type})': `-{self.src(inner)}` negates {_article(inner.type)}, and CEL negates an int or a double alone"
            )
        n = inner.node
        kind = inner.type
        return _T(_arith(lambda d, u: 0, n, "-", kind), kind, tok.start, inner.end, depth=inner.depth)

    def member(self) -> _T:
        t = self.primary()
        while self.peek() in (".", "["):
            if self.peek() == "[":
                raise UnreadableError("an index ([...]) is not read here")
            self.take()
            tok = self.take()
            if tok.kind != "name":
                raise RefusedError(f"a name expected after '.', {tok.text!r} found (a syntax error to cel-go's parser)")
            t = self.method(t, tok.text) if self.peek() == "(" else self.field(t, tok)
        return t

    def field(self, t: _T, tok: _Tok) -> _T:
        name = tok.text
        if t.type != "disk":
            raise RefusedError(f"`{self.src(t)}.{name}`: type '{t.type}' does not support field selection")
        if name not in FIELD_TYPES:
            raise RefusedError(f"disk.{name} is not a field of Talos's disk (block.DiskSpec): undefined field '{name}'")
        n = t.node

        def get(d: Disk, u: set[str]) -> Value:
            disk = n(d, u)
            assert isinstance(disk, Disk)
            value = disk.fields.get(name, UNKNOWN)
            if isinstance(value, Spelled):
                u.add(f"disk.{name} beyond udev's spelling of it in the link, {max(value.spellings, key=len)} or its {value.words} words")
            elif not isinstance(value, (str, int, bool)):
                u.add(f"disk.{name}")
            return value

        return _T(get, FIELD_TYPES[name], t.start, tok.end, depth=1 + t.depth)

    def args(self) -> tuple[list[_T], int]:
        self.take("(")
        out: list[_T] = []
        while self.peek() != ")":
            out.append(self.ternary())
            if self.peek() != ")":
                self.take(",")
        return out, self.take(")").end

    def method(self, recv: _T, name: str) -> _T:
        if name in ("exists", "all", "exists_one"):
            return self.macro(recv, name)
        if name in ("map", "filter"):
            # Macros that bind a name, as exists does (parser/macro.go): not read here, and their arguments with them.
            raise UnreadableError(f".{name}() is not read here (startsWith, endsWith, contains, matches, size, exists and all are)")
        args, end = self.args()
        if name == "size" and not args:
            return self.size(recv, recv.start, end, 1 + recv.depth)
        if name in ("startsWith", "endsWith", "contains", "matches"):
            if len(args) != 1 or recv.type not in ("string", "dyn") or args[0].type not in ("string", "dyn"):
                kinds = ", ".join(a.type for a in args)
                raise RefusedError(f"found no matching overload for '{name}' applied to '{recv.type}.({kinds})' (a string's, of a string)")
            return _T(_method(recv.node, name, args[0].node), "bool", recv.start, end, depth=1 + max(recv.depth, args[0].depth))
        if name in _STANDARD or name == "size":
            raise UnreadableError(f".{name}() is not read here (startsWith, endsWith, contains, matches, size, exists and all are)")
        raise RefusedError(f".{name}() is no function of Talos's selector environment (undeclared reference to '{name}')")

    def size(self, t: _T, start: int, end: int, depth: int) -> _T:
        if t.type not in ("string", "dyn") and not t.type.startswith("list("):
            raise RefusedError(f"found no matching overload for 'size' applied to '({t.type})'")
        n = t.node
        return _T(lambda d, u: _size(n(d, u)), "int", start, end, depth=depth)

    def macro(self, recv: _T, name: str) -> _T:
        self.take("(")
        var = self.take()
        if var.kind != "name":
            raise RefusedError(f"{name}() takes a variable name first, {var.text!r} found")
        self.take(",")
        if not recv.type.startswith("list(") and recv.type != "dyn":
            raise RefusedError(f"expression of type '{recv.type}' cannot be range of a comprehension (must be list, map, or dynamic)")
        binding: dict[str, Value] = {}
        outer = self.scope.get(var.text)
        self.scope[var.text] = (recv.type[5:-1] if recv.type.startswith("list(") else "dyn", binding)
        try:
            pred = self.ternary()
        finally:
            if outer is None:
                del self.scope[var.text]
            else:
                self.scope[var.text] = outer
        end = self.take(")").end
        if pred.type not in ("bool", "dyn"):
            raise RefusedError(f"the condition of {name}() is {_article(pred.type)}, not a bool")
        items, p = recv.node, pred.node

        def run(d: Disk, u: set[str]) -> Value:
            return _comprehension(name, items(d, u), lambda x: _bound(binding, var.text, x, p, d, u))

        return _T(run, "bool", recv.start, end, depth=1 + max(recv.depth, pred.depth))

    def primary(self) -> _T:
        tok = self.take()
        text = tok.text
        if tok.kind == "str":
            value = _unescape(text)
            return _T(lambda d, u: value, "string", tok.start, tok.end)
        if tok.kind == "num":
            return self.number(tok)
        if text == "(":
            inner = self.ternary()
            end = self.take(")").end
            return _T(inner.node, inner.type, tok.start, end, depth=inner.depth)
        if text == "[":
            items: list[_T] = []
            while self.peek() != "]":
                items.append(self.ternary())
                if self.peek() != "]":
                    self.take(",")
            end = self.take("]").end
            # An aggregate literal's type is list(dyn) unless every item's is one (cel-go checker/checker.go:425, checkCreateList:
            # dynElementType without HomogeneousAggregateLiterals, which cel.NewEnv leaves off).
            kinds = {t.type for t in items}
            kind = kinds.pop() if len(kinds) == 1 else "dyn"
            nodes = [t.node for t in items]
            return _T(lambda d, u: [n(d, u) for n in nodes], f"list({kind})", tok.start, end, depth=max((t.depth for t in items), default=0))
        if tok.kind != "name":
            raise RefusedError(f"{text!r} is not CEL there (a syntax error to cel-go's parser)")
        if text in self.scope:
            kind, binding = self.scope[text]
            return _T(lambda d, u: binding[text], kind, tok.start, tok.end)
        if text in ("true", "false"):
            flag = text == "true"
            return _T(lambda d, u: flag, "bool", tok.start, tok.end)
        if text in UNITS:
            unit = UNITS[text]
            return _T(lambda d, u: unit, "uint", tok.start, tok.end)
        if text == "system_disk":
            return _T(lambda d, u: d.system_disk, "bool", tok.start, tok.end)
        if text == "disk":
            return _T(lambda d, u: d, "disk", tok.start, tok.end)
        if self.peek() == "(":
            return self.call(tok)
        if text == "null" or text in _STANDARD:
            raise UnreadableError(f"{text} is not read here (disk, system_disk, glob, size, int, uint and the size units are)")
        raise RefusedError(
            f"{text} is no name of Talos's selector environment: undeclared reference to '{text}' (it has disk, system_disk, glob() and the size units, celenv.go:36-57)"
        )

    def number(self, tok: _Tok) -> _T:
        text = tok.text
        if re.fullmatch(r"(?:\d*\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+", text):
            number = float(text)
            return _T(lambda d, u: number, "double", tok.start, tok.end)
        unsigned = text[-1] in "uU"
        # parser.go:763-795 (VisitInt, VisitUint): base 16 after `0x`, else base 10, a leading zero and all (0100u is 100u).
        body = text.rstrip("uU")
        value = int(body[2:], 16) if body.startswith("0x") else int(body, 10)
        high = (_UINT64 if unsigned else _INT64)[1]
        # cel-go's parser folds a unary minus into the literal after it, so -9223372036854775808 is an int; a binary
        # minus (after a value: a name, a literal, `)` or `]`) is not folded.
        before = self.toks[self.i - 3] if self.i >= 3 else None
        negated = self.i >= 2 and self.toks[self.i - 2].text == "-" and (before is None or (before.kind == "op" and before.text not in (")", "]")))
        if value > high + (0 if unsigned or not negated else 1):
            raise RefusedError(f"{text} is out of the range of {'a uint' if unsigned else 'an int'} (cel-go's parser refuses it)")
        return _T(lambda d, u: value, "uint" if unsigned else "int", tok.start, tok.end, not unsigned)

    def call(self, tok: _Tok) -> _T:
        name = tok.text
        args, end = self.args()
        kinds = ", ".join(a.type for a in args)
        if name == "glob":
            # celenv.go:45-52: glob(string, string), go-glob's Glob (stacks.disk_ids.glob).
            if len(args) != 2 or any(a.type not in ("string", "dyn") for a in args):
                raise RefusedError(f"found no matching overload for 'glob' applied to '({kinds})' (a pattern and a string)")
            pattern, text = args[0].node, args[1].node
            written = _tokens(self.src(args[0]))
            if len(written) == 1 and written[0].kind == "str":
                self.globs.append(_unescape(written[0].text))
            return _T(lambda d, u: _glob(pattern(d, u), text(d, u)), "bool", tok.start, end, depth=max(a.depth for a in args))
        if name == "size" and len(args) == 1:
            return self.size(args[0], tok.start, end, args[0].depth)
        if name in ("int", "uint") and len(args) == 1:
            # standard.go's conversions: int(uint), uint(int) and of a double (truncated) or a string; out of range is an error.
            if args[0].type not in ("int", "uint", "double", "string", "dyn"):
                raise RefusedError(f"found no matching overload for '{name}' applied to '({kinds})'")
            n = args[0].node
            return _T(_convert(n, name), name, tok.start, end, depth=args[0].depth)
        if name in ("startsWith", "endsWith", "contains"):
            # A string's methods alone (standard.go: member overloads), so a call without the receiver finds none.
            raise RefusedError(f"found no matching overload for '{name}' applied to '({kinds})': it is a string's method, written s.{name}(x)")
        if name in _STANDARD or name in ("size", "matches", "int", "uint"):
            raise UnreadableError(f"{name}() is not read here (glob, size, int and uint are)")
        raise RefusedError(
            f"{name}() is no function of Talos's selector environment: undeclared reference to '{name}' (it has glob() and cel-go's standard functions, celenv.go:36-57)"
        )


def glob_patterns(match: str) -> list[str]:
    """Each glob() pattern a selector writes as a string (none when Talos refuses it or it is outside the subset)."""
    try:
        parser = _Parser(match)
        with _deep():
            parser.parse()
    except (UnreadableError, RecursionError):
        return []
    return parser.globs


def _known(v: Value) -> bool:
    return v is not UNKNOWN and not isinstance(v, (Partial, Links))


def _same(a: Value, b: Value) -> bool:
    return _known(a) and _known(b) and type(a) is type(b) and a == b


def _or(values: list[Value]) -> Value:
    if any(v is True for v in values):
        return True
    if all(v is False for v in values):
        return False
    return UNKNOWN


def _not(value: Value) -> Value:
    return (not value) if isinstance(value, bool) else UNKNOWN


def _arith(left: Node, right: Node, op: str, kind: str) -> Node:
    """CEL's arithmetic of two values of type `kind`: int and uint division and modulo truncated toward zero (Go's, as
    cel-go's), and no value for a division by zero or a result out of the type's range (an error in CEL: cel-go
    common/types/int.go and uint.go check each), which the evaluation reads as unknown (an error is no disk's `true`, but
    nor is it `false`; Talos's volume manager stops at it, locate.go:257-260)."""

    def run(d: Disk, u: set[str]) -> Value:
        a, b = left(d, u), right(d, u)
        if not _known(a) or not _known(b) or isinstance(a, bool) or isinstance(b, bool):
            return UNKNOWN
        if kind == "double":
            x, y = float(a), float(b)  # type: ignore[arg-type]
            if op == "/":
                return x / y if y else (float("nan") if x == 0 or x != x else float("inf") * (1 if x > 0 else -1))
            return {"+": x + y, "-": x - y, "*": x * y}[op]
        if not isinstance(a, int) or not isinstance(b, int):
            return UNKNOWN
        if op in ("/", "%"):
            if b == 0:
                return UNKNOWN
            q = abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1)
            value = q if op == "/" else a - b * q
        else:
            value = {"+": a + b, "-": a - b, "*": a * b}[op]
        low, high = _UINT64 if kind == "uint" else _INT64
        return value if low <= value <= high else UNKNOWN

    return run


def _convert(node: Node, to: str) -> Node:
    def run(d: Disk, u: set[str]) -> Value:
        v = node(d, u)
        if not _known(v) or isinstance(v, bool):
            return UNKNOWN
        if isinstance(v, str):
            if not re.fullmatch(r"-?\d+", v):
                return UNKNOWN
            v = int(v)
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                return UNKNOWN
            v = int(v)
        if not isinstance(v, int):
            return UNKNOWN
        low, high = _UINT64 if to == "uint" else _INT64
        return v if low <= v <= high else UNKNOWN

    return run


def _size(v: Value) -> Value:
    """size() of a string (its code points, cel-go's) or a list; unknown of what the inventory tells in part."""
    if isinstance(v, (str, list)):
        return len(v)
    return UNKNOWN


def _bound(binding: dict[str, Value], name: str, item: Value, pred: Node, d: Disk, u: set[str]) -> Value:
    binding[name] = item
    return pred(d, u)


def _comprehension(name: str, items: Value, pred: Callable[[Value], Value]) -> Value:
    """exists, all and exists_one over a list: a literal's items are all known; of disk.symlinks only the links the
    inventory names, so a link the predicate is true of makes exists true (all false, when false), and nothing else
    can be told. exists is an || of the items and all an && (cel-spec langdef.md, "Macros"), with their commutativity."""
    if isinstance(items, list):
        values = [pred(x) for x in items]
        if name == "exists":
            return _or(values)
        if name == "all":
            return _not(_or([_not(v) for v in values]))
        if any(v is not True and v is not False for v in values):
            return UNKNOWN
        return sum(v is True for v in values) == 1
    if isinstance(items, Links):
        values = [pred(x) for x in sorted(items.known)]
        if name == "exists" and any(v is True for v in values):
            return True
        if name == "all" and any(v is False for v in values):
            return False
    return UNKNOWN


def _equal(a: Value, b: Value) -> Value:
    if isinstance(a, Partial):
        a, b = b, a
    if a is UNKNOWN or b is UNKNOWN or isinstance(a, (Partial, Links)) or isinstance(b, Links):
        return UNKNOWN
    if isinstance(b, Partial):
        if not isinstance(a, str):
            return False  # a dyn of another type: CEL's heterogeneous == is false
        if isinstance(b, Spelled):
            return b.equals(a)
        if not a.startswith(b.prefix) or a in b.not_values:
            return False
        return UNKNOWN
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        return _not(_or([_not(_equal(x, y)) for x, y in zip(a, b, strict=True)]))
    # Numbers of two types (only through a dyn) compare by value (cel-spec langdef.md, "Numbers" heterogeneous
    # equality); a bool is no number, though Python's is an int.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _in(item: Value, items: Value) -> Value:
    if item is UNKNOWN or items is UNKNOWN:
        return UNKNOWN
    if isinstance(items, Links):
        if not isinstance(item, str):
            return UNKNOWN
        if item in items.known:
            return True
        return False if items.other(item) else UNKNOWN
    if isinstance(items, list):
        return _or([_equal(item, x) for x in items])
    return UNKNOWN


def _glob(pattern: Value, text: Value) -> Value:
    if not isinstance(pattern, str):
        return UNKNOWN
    if isinstance(text, str):
        return glob(pattern, text)
    if isinstance(text, Spelled):
        return text.call("glob", pattern)
    if isinstance(text, Partial):
        fixed = pattern.split("*", 1)[0]
        if not (fixed.startswith(text.prefix) or text.prefix.startswith(fixed)):
            return False
    return UNKNOWN


# The forms RE2 and Python's re read alike: literals, ., anchors, quantifiers, groups without (?, bracket classes
# without [:name:], and the escapes \d \w \s and of punctuation; anything else (flags, named groups, \p{..},
# \z, backreferences RE2 refuses) leaves matches() unknown.
_SIMPLE_RE = re.compile(r"^(?:[^\\(\[]|\\[.^$*+?()\[\]{}|\\/dDwWsS-]|\((?!\?)|\[(?!\[:))*$")


def _method(recv: Node, name: str, arg: Node) -> Node:
    def call(d: Disk, u: set[str]) -> Value:
        text, what = recv(d, u), arg(d, u)
        if not isinstance(what, str):
            return UNKNOWN
        if isinstance(text, Spelled):
            return text.call(name, what)
        if isinstance(text, Partial):
            if name == "startsWith":
                if text.prefix.startswith(what):
                    return True
                return UNKNOWN if what.startswith(text.prefix) else False
            return UNKNOWN
        if not isinstance(text, str):
            return UNKNOWN
        return _string_call(name, text, what)

    return call


def _string_call(name: str, text: str, what: str) -> Value:
    if name == "startsWith":
        return text.startswith(what)
    if name == "endsWith":
        return text.endswith(what)
    if name == "contains":
        return what in text
    # CEL's matches is RE2 and true for a match anywhere (cel-spec langdef.md, "matches").
    if not _SIMPLE_RE.match(what):
        return UNKNOWN
    try:
        return re.search(what, text) is not None
    except re.error:
        return UNKNOWN


def parse(match: str) -> Node:
    """The selector as a function of a Disk: RefusedError if Talos refuses it (with the fix, where one is certain, made to
    type-check), UnreadableError if it is outside the subset read here."""
    try:
        with _deep():
            t = _Parser(match).parse()
    except RefusedError as e:
        e.fix = _checked_fix(e.fix)
        raise
    except RecursionError:
        raise UnreadableError("it nests too deep to be read here") from None
    if t.type not in ("bool",):
        # cel.go:76-78: the checked type must be exactly bool.
        raise RefusedError(f"its type is {t.type}, not bool: expression output type is {t.type}, expected bool (cel.go:76-78)")
    return t.node


@contextmanager
def _deep() -> Iterator[None]:
    """Room for the deepest selector cel-go reads: this parser spends about nine Python frames on each of its 250 levels,
    and a node's evaluation a few on each, past Python's default limit of 1000."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 12 * _MAX_DEPTH * 10))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def _checked_fix(fix: str | None) -> str | None:
    """`fix` once each further int beside a uint in it is fixed as well, or None where that leaves another refusal or a
    part not read here (which may hide one, and which stacks.rules refuses beside data disks)."""
    for _ in range(16):
        if fix is None:
            return None
        try:
            with _deep():
                t = _Parser(fix).parse()
        except RefusedError as e:
            fix = e.fix
            continue
        except (UnreadableError, RecursionError):
            return None
        return fix if t.type == "bool" else None
    return None


def evaluate(node: Node, disk: Disk) -> Result:
    """The selector's value on `disk`: True, False or UNKNOWN, and the fields that left it unknown."""
    unknown: set[str] = set()
    try:
        with _deep():
            value = node(disk, unknown)
    except RecursionError:
        value = UNKNOWN
    if not isinstance(value, bool):
        value = UNKNOWN
    return Result(value, unknown if value is UNKNOWN else set())


_MODEL_SERIAL = ("ata-", "nvme-", "scsi-", "usb-")
_WWID_LINKS = ("wwn-", "nvme-eui.", "nvme-nvme.")


def _other_link(disk: str) -> Callable[[str], bool]:
    """Whether a link is provably not one of `disk`'s: two /dev/disk/by-id/ links of the model_serial kind on one bus,
    differing in name but for an NVMe namespace's _<nsid> (udev writes one such link a device, and the namespace's
    second, 60-persistent-storage.rules)."""

    def other(link: str) -> bool:
        if not (disk.startswith("/dev/disk/by-id/") and link.startswith("/dev/disk/by-id/")):
            return False
        a, b = by_id_name(disk), by_id_name(link)
        if a.startswith(_WWID_LINKS) or b.startswith(_WWID_LINKS) or "-part" in link:
            return False
        bus_a, bus_b = a.split("-", 1)[0], b.split("-", 1)[0]
        if bus_a != bus_b or bus_a + "-" not in _MODEL_SERIAL:
            return False
        return a != b and not namespace_links(a, b)

    return other


def inventory_disk(name: str, system_disk: bool = False, transport: str | None = None) -> Disk:
    """The model of a disk the inventory names by `name` (a /dev kernel name or a /dev/disk/ link); `transport` is
    nvme, mmc, other (not nvme, not mmc) or None, as stacks.rules._transport reads the name."""
    fields: dict[str, Value] = {}
    not_nvme_mmc = Partial(not_values=frozenset({"nvme", "mmc"}))
    if transport in ("nvme", "mmc"):
        fields["transport"] = transport
    elif transport == "other":
        fields["transport"] = not_nvme_mmc
    if transport == "nvme":
        fields["rotational"] = False  # an NVMe namespace is flash: the kernel sets no rotational flag for it
    if name.startswith("/dev/disk/"):
        fields["symlinks"] = Links(frozenset({name}), _other_link(name))
        prefix = {"nvme": "/dev/nvme", "mmc": "/dev/mmcblk"}.get(transport or "", "/dev/")
        fields["dev_path"] = Partial(prefix=prefix)
        link = by_id_name(name) if name.startswith("/dev/disk/by-id/") else ""
        if link.startswith(_WWID_LINKS):
            fields["wwid"] = "naa." + link.removeprefix("wwn-0x") if link.startswith("wwn-0x") else link.removeprefix("nvme-")
            if (wwid := nvme_wwid_of_link(name)) is not None and (carried := nvme_wwid_parts(wwid)) is not None:
                # The serial and model the controller reports, which the wwid carries whole (stacks.disk_ids), as Talos
                # reads them from sysfs with the blanks around cut (siderolabs/go-blockdevice block/device_linux.go:343,
                # 458-465 at v2.0.3, the newest stored; Talos pins v2.0.32).
                fields["serial"], fields["model"] = carried[0], carried[1]
        elif link.startswith(_MODEL_SERIAL):
            # udev names the link <bus>-<model>_<serial> (the model's spaces written `_`), and an NVMe namespace's
            # second link <...>_<serial>_<nsid> (60-persistent-storage.rules): the serial is the last part, or the one
            # before a namespace's number; the link's other parts are the model's.
            words = link.split("-", 1)[1].split("_")
            if link.startswith("nvme-") and len(words) > 1:
                # An NVMe link's model and serial are the controller's sysfs model and serial (ID_MODEL=$attr{model},
                # ID_SERIAL_SHORT=$attr{serial}), the ones Talos reads (block/device_linux.go:343-344), spelled by udev.
                # A blank in either is spelled `_` as the words' separator is, so where the model ends and the serial
                # starts is not told: each run of the link's first words is the model's spelling, each run of its last
                # (before a namespace's number) the serial's.
                fields["model"] = Spelled(spellings=frozenset("_".join(words[:k]) for k in range(1, len(words))))
                fields["serial"] = Spelled(spellings=frozenset(nvme_serial_runs(link.removeprefix("nvme-"))), words="last")
            # An ATA, SCSI or USB link tells neither as Talos reads them. Its model is udev's (ata_id's IDENTIFY model, or
            # usb_id's vendor_model), while Talos's is the SCSI layer's 16-character INQUIRY product. Its serial is
            # go-blockdevice's sysfs device/serial, which a SCSI-layer disk has none of, so "" for a SATA (AHCI), USB or
            # SAS disk, and for transport ata or scsi what ata_id or scsi_id gives, ata_id's being the whole
            # <model>_<serial> (Talos internal/app/machined/pkg/controllers/block/disks.go:225-232,267-298 at
            # v1.14.0-rc.1): both stay unknown.
    else:
        fields["dev_path"] = name
        fields["symlinks"] = Links(frozenset(), lambda link: False)
    return Disk(fields, system_disk)


@dataclass(frozen=True)
class Spelled(Partial):
    """A string known as udev spells it in a link's name (stacks.disk_ids.udev_spelling: its blanks at the ends cut, each
    run of blanks within and each character outside the few it keeps written `_`): its spelling is one of `spellings`.
    A string that starts with, ends with or holds another has a spelling that does the same of the other's spelling
    (or of less of it, where the other's ends are blanks), so what no spelling could do, the string does not."""

    spellings: frozenset[str] = frozenset()
    words: str = "first"  # which of the link's words spell it, for the message of what is unknown

    def equals(self, text: str) -> Value:
        if udev_spelling(text) not in self.spellings:
            return False
        return True if self.spellings == {text} and "_" not in text else UNKNOWN

    def call(self, name: str, what: str) -> Value:
        """startsWith, endsWith, contains or glob of `what`: false when no spelling could be, else unknown."""
        if name == "glob":
            pattern = "*".join(udev_spelling(part) for part in what.split("*"))
            could = any(glob(pattern, s) for s in self.spellings)
        elif name in ("startsWith", "endsWith", "contains"):
            could = any(_string_call(name, s, udev_spelling(what)) is True for s in self.spellings)
        else:
            could = True
        return UNKNOWN if could else False
