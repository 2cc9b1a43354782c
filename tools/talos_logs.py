"""What a Talos machine sends to its log destinations, byte for byte, for the tests (Talos itself cannot run here).

Every behaviour is Talos v1.12.4's (the nodes' version; v1.13.0's files are the same at these lines):

- **A service's log line** becomes an event (internal/app/machined/pkg/runtime/logging/extract.go, parseLogLine):
  a line that is JSON, or text followed by JSON, gives its fields; its `time`/`ts` the event's time (lines 35-58),
  its `level` the level (60-74: `warning` read as `warn`), its `msg` the message (76-85), its `err` appended after
  `: ` with at least the warn level (87-99); any other line is the message, at info, at the time it was read. The
  service's events carry `talos-service` (circular.go:79-86), copied over the line's own fields (circular.go:296-300).
- **A kernel message** is read from /dev/kmsg by go-kmsg v0.1.4 (message.go ParseMessage: `<syslog prefix>,<seq>,
  <microseconds since boot>,...;<text>`, the priority the prefix's low three bits, the facility the rest) and becomes
  an event with `facility`, `seq`, `clock` and `priority` (controllers/runtime/kmsg_log.go:195-205) at the level of
  kmsgPriorityToLevel (lines 261-274).
- **The sender** (runtime/logging/sender_jsonlines.go, marshalJSON and Send, lines 53-113): the event's fields, then
  `msg`, `talos-time` (time.RFC3339Nano) and `talos-level` (zapcore's level names), marshalled by Go's encoding/json
  (a map: keys sorted, HTML characters escaped), newline-ended over TCP, one datagram each over UDP.
"""

from __future__ import annotations

import datetime
import json
import socket
from collections.abc import Iterable, Mapping
from typing import Any

# zapcore.Level.String().
LEVELS = ("debug", "info", "warn", "error", "dpanic", "panic", "fatal")
# go-kmsg v0.1.4 message.go:43-69.
FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    "ntp", "security", "console", "solaris-cron", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
PRIORITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


def rfc3339_nano(when: datetime.datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: the fraction with its trailing zeros cut, `Z` for UTC."""
    utc = when.astimezone(datetime.UTC)
    fraction = f"{utc.microsecond * 1000:09d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def go_json(fields: Mapping[str, Any]) -> bytes:
    """encoding/json's Marshal of a map[string]any: keys sorted, no spaces, <, > and & (and U+2028/9) escaped."""
    text = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


def event_line(
    msg: str, when: datetime.datetime, level: str, fields: Mapping[str, Any] | None = None, extra_tags: Mapping[str, str] | None = None
) -> bytes:
    """One event as the JSON-lines sender writes it to a TCP destination (sender_jsonlines.go:52-77): the event's
    fields, then msg, talos-time and talos-level, then the destination's `extraTags` over all of them (lines 61-63)."""
    assert level in LEVELS, level
    out = dict(fields or {})
    out |= {"msg": msg, "talos-time": rfc3339_nano(when), "talos-level": level}
    out |= dict(extra_tags or {})
    return go_json(out) + b"\n"


def service_line(service: str, line: str, read_at: datetime.datetime, extra_tags: Mapping[str, str] | None = None) -> bytes:
    """A service's output line as Talos sends it: parsed as parseLogLine parses it, tagged with the service."""
    msg, parsed = _parse(line)
    when, level = read_at, "info"
    for key in ("time", "ts"):
        value = parsed.get(key)
        found = None
        if isinstance(value, str):
            try:
                found = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                found = None
        elif isinstance(value, int | float):
            seconds = value / 1000 if value > 32503680000 else value  # seconds or milliseconds since the epoch (extract.go:43-49)
            found = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
        if found is not None:
            when = found
            del parsed[key]
            break
    if isinstance(parsed.get("level"), str):
        name = parsed["level"].lower()
        name = "warn" if name == "warning" else name
        if name in LEVELS:
            level = name
            del parsed["level"]
    if isinstance(parsed.get("msg"), str):
        msg = f"{msg} {parsed.pop('msg').strip()}" if msg else parsed.pop("msg").strip()
    if isinstance(parsed.get("err"), str):
        if LEVELS.index(level) < LEVELS.index("warn"):
            level = "warn"
        msg = f"{msg}: {parsed.pop('err').strip()}" if msg else parsed.pop("err").strip()
    return event_line(msg, when, level, {**parsed, "talos-service": service}, extra_tags)


def _parse(line: str) -> tuple[str, dict[str, Any]]:
    """extract.go parseJSONLogLine (lines 106-125): the whole line as JSON, or text followed by JSON, or text."""
    try:
        found = json.loads(line)
        if isinstance(found, dict):
            return "", found
    except ValueError:
        pass
    if "{" in line:
        head, _, tail = line.partition("{")
        try:
            found = json.loads("{" + tail)
            if isinstance(found, dict):
                return head.strip(), found
        except ValueError:
            pass
    return line, {}


def kernel_level(priority: int) -> str:
    """kmsgPriorityToLevel: alert, crit, emerg, err -> error; debug; info, notice -> info; warning -> warn."""
    return {0: "error", 1: "error", 2: "error", 3: "error", 4: "warn", 5: "info", 6: "info", 7: "debug"}[priority]


def kernel_line(record: str, boot: datetime.datetime) -> bytes:
    """A /dev/kmsg record (`6,1042,12345678,-;text`) as the KmsgLogConfig delivery sends it."""
    prefix, _, text = record.partition(";")
    syslog, sequence, clock = (int(p) for p in prefix.split(",")[:3])
    priority, facility = syslog & 7, syslog >> 3
    when = boot + datetime.timedelta(microseconds=clock)
    fields = {"facility": FACILITIES[facility], "seq": sequence, "clock": clock, "priority": PRIORITIES[priority]}
    return event_line(text, when, kernel_level(priority), fields)


def send_tcp(port: int, lines: Iterable[bytes], host: str = "127.0.0.1", timeout: float = 10) -> None:
    """Write the lines on one connection, as the sender keeps its connection between events (Send, lines 79-95)."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        for line in lines:
            conn.sendall(line)


def main(argv: list[str]) -> int:
    """`python -m tools.talos_logs PORT FILE [HOST]`: send FILE's lines (already in Talos's form) to HOST:PORT
    (127.0.0.1 unless given)."""
    port, path = int(argv[0]), argv[1]
    with open(path, "rb") as handle:
        send_tcp(port, handle.read().splitlines(keepends=True), host=argv[2] if len(argv) > 2 else "127.0.0.1")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
