"""A Talos volume's CEL disk selector (provisioning.diskSelector.match) read as Talos reads it, against what the
inventory tells of a disk.

Talos evaluates the selector against every disk of the machine (internal/app/machined/pkg/controllers/block/internal/
volumes/locate.go:251-261 at v1.14.0-beta.1) in its DiskLocator environment: `disk` (a block.DiskSpec), `system_disk`,
glob(pattern, string) (go-glob's, stacks.disk_ids.glob) and the unit constants KiB..EiB and kB..EB (pkg/machinery/cel/celenv/celenv.go:36-56,253-274).
The inventory tells only part of a disk (its name), so the value of an expression is three-valued: True, False or
UNKNOWN, where UNKNOWN means "it may be either on the real disk". The subset read here is what selectors are written
with; anything else is unreadable (UnreadableError), which the caller treats as "may select any disk".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from stacks.disk_ids import by_id_name, glob, namespace_links


class UnreadableError(ValueError):
    """An expression outside the subset read here, or one CEL itself would refuse."""


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


Value = object  # str, int, bool, Partial, Links, list, or UNKNOWN


@dataclass(frozen=True)
class Disk:
    """What the inventory tells of one disk: a field absent from `fields` is unknown."""

    fields: dict[str, Value]
    system_disk: bool


# block.DiskSpec's fields (api/resource/definitions/block/block.proto:82-106 at v1.14.0-beta.1), as CEL names them;
# a field outside these is a compile error in Talos, which refuses the config.
DISK_FIELDS = frozenset(
    {
        "size",
        "io_size",
        "sector_size",
        "readonly",
        "model",
        "serial",
        "modalias",
        "wwid",
        "bus_path",
        "sub_system",
        "transport",
        "rotational",
        "cdrom",
        "dev_path",
        "pretty_size",
        "secondary_disks",
        "uuid",
        "symlinks",
        "firmware_version",
    }
)

# celenv.go:253-267: the unit constants, uint.
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

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>'[^'\\\n]*'|"[^"\\\n]*")
    |(?P<num>0x[0-9a-fA-F]+u?|\d+u?)
    |(?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\],.?:*/+-])
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if m is None or m.lastgroup is None:
            raise UnreadableError(f"{text[i:].strip()[:20]!r} is not read (a string with an escape, a raw or bytes string, a double)")
        out.append((m.lastgroup, m[m.lastgroup]))
        i = m.end()
    return out


@dataclass
class Result:
    """An expression's value on one disk, and the disk fields whose being unknown left it UNKNOWN."""

    value: Value
    unknown: set[str] = field(default_factory=set)


Node = Callable[[Disk, set[str]], Value]


class _Parser:
    """A recursive-descent parser of CEL's grammar (cel-spec/doc/langdef.md, "Syntax") for the subset read here; it
    builds a function of a Disk."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise UnreadableError("it ends early")
        tok = self.toks[self.i]
        if want is not None and tok[1] != want:
            raise UnreadableError(f"{want!r} expected, {tok[1]!r} found")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.ternary()
        if self.i != len(self.toks):
            raise UnreadableError(f"{self.toks[self.i][1]!r} is not read there")
        return node

    def ternary(self) -> Node:
        cond = self.or_()
        if self.peek() != "?":
            return cond
        self.take("?")
        yes = self.or_()
        self.take(":")
        no = self.ternary()

        def pick(d: Disk, u: set[str]) -> Value:
            c = cond(d, u)
            if c is True:
                return yes(d, u)
            if c is False:
                return no(d, u)
            a, b = yes(d, u), no(d, u)
            return a if a == b and a is not UNKNOWN and not isinstance(a, (Partial, Links)) else UNKNOWN

        return pick

    def or_(self) -> Node:
        parts = [self.and_()]
        while self.peek() == "||":
            self.take()
            parts.append(self.and_())
        if len(parts) == 1:
            return parts[0]
        # CEL's || is commutative over errors and unknowns: true if any part is (cel-spec langdef.md, "Logical Operators").
        return lambda d, u: _or([p(d, u) for p in parts])

    def and_(self) -> Node:
        parts = [self.relation()]
        while self.peek() == "&&":
            self.take()
            parts.append(self.relation())
        if len(parts) == 1:
            return parts[0]
        return lambda d, u: _not(_or([_not(p(d, u)) for p in parts]))

    def relation(self) -> Node:
        left = self.addition()
        op = self.peek()
        if op not in ("==", "!=", "<", ">", "<=", ">=", "in"):
            return left
        self.take()
        right = self.addition()
        if op == "in":
            return lambda d, u: _in(left(d, u), right(d, u))
        if op in ("==", "!="):
            neg = op == "!="
            return lambda d, u: _not(_equal(left(d, u), right(d, u))) if neg else _equal(left(d, u), right(d, u))
        compare = {"<": int.__lt__, ">": int.__gt__, "<=": int.__le__, ">=": int.__ge__}[op]

        def order(d: Disk, u: set[str]) -> Value:
            a, b = left(d, u), right(d, u)
            if a is UNKNOWN or b is UNKNOWN:
                return UNKNOWN
            if type(a) is not int or type(b) is not int:
                raise UnreadableError(f"{op} compares numbers only")
            return compare(a, b)

        return order

    def addition(self) -> Node:
        left = self.multiplication()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            left = _arith(left, self.multiplication(), int.__add__ if op == "+" else int.__sub__)
        return left

    def multiplication(self) -> Node:
        left = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()[1]
            left = _arith(left, self.unary(), int.__mul__ if op == "*" else _divide)
        return left

    def unary(self) -> Node:
        if self.peek() == "!":
            self.take()
            inner = self.unary()
            return lambda d, u: _not(inner(d, u))
        if self.peek() == "-":
            self.take()
            inner = self.unary()
            return _arith(lambda d, u: 0, inner, int.__sub__)
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self.peek() == ".":
            self.take()
            kind, name = self.take()
            if kind != "name":
                raise UnreadableError(f"a name expected after '.', {name!r} found")
            if self.peek() == "(":
                args = self.args()
                node = _method(node, name, args)
            else:
                node = _field(node, name)
        return node

    def args(self) -> list[Node]:
        self.take("(")
        out: list[Node] = []
        while self.peek() != ")":
            out.append(self.ternary())
            if self.peek() != ")":
                self.take(",")
        self.take(")")
        return out

    def primary(self) -> Node:
        kind, tok = self.take()
        if kind == "str":
            text = tok[1:-1]
            return lambda d, u: text
        if kind == "num":
            number = int(tok.rstrip("u"), 0)
            return lambda d, u: number
        if tok == "(":
            inner = self.ternary()
            self.take(")")
            return inner
        if tok == "[":
            items: list[Node] = []
            while self.peek() != "]":
                items.append(self.ternary())
                if self.peek() != "]":
                    self.take(",")
            self.take("]")
            return lambda d, u: [n(d, u) for n in items]
        if kind != "name":
            raise UnreadableError(f"{tok!r} is not read there")
        if tok in ("true", "false"):
            flag = tok == "true"
            return lambda d, u: flag
        if tok in UNITS:
            unit = UNITS[tok]
            return lambda d, u: unit
        if tok == "system_disk":
            return lambda d, u: d.system_disk
        if tok == "disk":
            return lambda d, u: d
        if tok == "glob" and self.peek() == "(":
            args = self.args()
            if len(args) != 2:
                raise UnreadableError("glob takes a pattern and a string")
            return lambda d, u: _glob(args[0](d, u), args[1](d, u))
        raise UnreadableError(f"{tok} is not read here (disk, system_disk, glob and the size units are)")


def _or(values: list[Value]) -> Value:
    if any(v is True for v in values):
        return True
    if all(v is False for v in values):
        return False
    if any(v is not UNKNOWN and not isinstance(v, bool) for v in values):
        raise UnreadableError("&&, || and ! take booleans")
    return UNKNOWN


def _not(value: Value) -> Value:
    if value is UNKNOWN:
        return UNKNOWN
    if not isinstance(value, bool):
        raise UnreadableError("&&, || and ! take booleans")
    return not value


def _divide(a: int, b: int) -> int | None:
    """CEL's division: truncated toward zero (cel-go's int and uint `/`, Go's), and no value for a division by zero, an
    error in CEL, which the evaluation reads as unknown (an error is no disk's `true`, but nor is it `false`)."""
    if b == 0:
        return None
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _arith(left: Node, right: Node, op: Callable[[int, int], int | None]) -> Node:
    def run(d: Disk, u: set[str]) -> Value:
        a, b = left(d, u), right(d, u)
        if a is UNKNOWN or b is UNKNOWN:
            return UNKNOWN
        if type(a) is not int or type(b) is not int:
            raise UnreadableError("it does arithmetic on other than numbers")
        value = op(a, b)
        return UNKNOWN if value is None else value

    return run


def _field(node: Node, name: str) -> Node:
    if name not in DISK_FIELDS:
        raise UnreadableError(f"disk.{name} is not a field of Talos's disk (block.DiskSpec)")

    def get(d: Disk, u: set[str]) -> Value:
        disk = node(d, u)
        if not isinstance(disk, Disk):
            raise UnreadableError(f".{name} is read of disk only")
        value = disk.fields.get(name, UNKNOWN)
        if not isinstance(value, (str, int, bool)):
            u.add(f"disk.{name}")
        return value

    return get


def _equal(a: Value, b: Value) -> Value:
    if isinstance(a, Partial):
        a, b = b, a
    if a is UNKNOWN or b is UNKNOWN:
        return UNKNOWN
    if isinstance(b, Partial):
        if not isinstance(a, str):
            raise UnreadableError("it compares a string field with another type")
        if not a.startswith(b.prefix) or a in b.not_values:
            return False
        if isinstance(b, _OneOf):
            return UNKNOWN if a in b.values and len(b.values) > 1 else a in b.values
        return UNKNOWN
    if type(a) is not type(b):
        raise UnreadableError("it compares values of two types with ==")
    return a == b


def _in(item: Value, items: Value) -> Value:
    if item is UNKNOWN or items is UNKNOWN:
        return UNKNOWN
    if isinstance(items, Links):
        if not isinstance(item, str):
            raise UnreadableError("disk.symlinks holds strings")
        if item in items.known:
            return True
        return False if items.other(item) else UNKNOWN
    if isinstance(items, list):
        found = [_equal(item, x) for x in items]
        return _or(found)
    raise UnreadableError("in takes a list")


def _glob(pattern: Value, text: Value) -> Value:
    if not isinstance(pattern, str):
        return UNKNOWN
    if isinstance(text, str):
        return glob(pattern, text)
    if isinstance(text, _OneOf):
        each = {glob(pattern, v) for v in text.values}
        return each.pop() if len(each) == 1 else UNKNOWN
    if isinstance(text, Partial):
        fixed = pattern.split("*", 1)[0]
        if not (fixed.startswith(text.prefix) or text.prefix.startswith(fixed)):
            return False
    return UNKNOWN


# The forms RE2 and Python's re read alike: literals, ., anchors, quantifiers, groups without (?, bracket classes
# without [:name:], and the escapes \d \w \s and of punctuation; anything else (flags, named groups, \p{..},
# \z, backreferences RE2 refuses) leaves matches() unknown.
_SIMPLE_RE = re.compile(r"^(?:[^\\(\[]|\\[.^$*+?()\[\]{}|\\/dDwWsS-]|\((?!\?)|\[(?!\[:))*$")


def _method(node: Node, name: str, args: list[Node]) -> Node:
    if name not in ("startsWith", "endsWith", "contains", "matches") or len(args) != 1:
        raise UnreadableError(f".{name}() is not read here (startsWith, endsWith, contains and matches are)")
    arg = args[0]

    def call(d: Disk, u: set[str]) -> Value:
        text, what = node(d, u), arg(d, u)
        if what is UNKNOWN:
            return UNKNOWN
        if not isinstance(what, str):
            raise UnreadableError(f".{name}() takes a string")
        if isinstance(text, _OneOf):
            each = {_string_call(name, v, what) for v in text.values}
            return each.pop() if len(each) == 1 else UNKNOWN
        if isinstance(text, Partial):
            if name == "startsWith":
                if text.prefix.startswith(what):
                    return True
                return UNKNOWN if what.startswith(text.prefix) else False
            return UNKNOWN
        if text is UNKNOWN:
            return UNKNOWN
        if not isinstance(text, str):
            raise UnreadableError(f".{name}() is called on a string")
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
    """The selector as a function of a Disk; UnreadableError if it is outside the subset read here."""
    return _Parser(match).parse()


def evaluate(node: Node, disk: Disk) -> Result:
    """The selector's value on `disk`: True, False or UNKNOWN, and the fields that left it unknown."""
    unknown: set[str] = set()
    value = node(disk, unknown)
    if value is not UNKNOWN and not isinstance(value, bool):
        raise UnreadableError("it is not a boolean")
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
        elif link.startswith(_MODEL_SERIAL):
            # udev names the link <bus>-<model>_<serial> (the model's spaces written `_`), and an NVMe namespace's
            # second link <...>_<serial>_<nsid> (60-persistent-storage.rules): the serial is the last part, or the one
            # before a namespace's number; the link's other parts are the model's.
            parts = link.split("_")[1:]
            serials = set(parts[-1:])
            if link.startswith("nvme-") and len(parts) > 1 and parts[-1].isdigit():
                serials.add(parts[-2])
            fields["serial"] = _OneOf(values=frozenset(serials)) if serials else UNKNOWN
    else:
        fields["dev_path"] = name
        fields["symlinks"] = Links(frozenset(), lambda link: False)
    return Disk(fields, system_disk)


@dataclass(frozen=True)
class _OneOf(Partial):
    """A string that is one of `values`."""

    values: frozenset[str] = frozenset()
