"""`iluvatar power bmc`: power an Arda machine on through a Turing Pi 2 BMC, as `pulumi up` runs it.

The step components.power registers runs this from the project folder with the BMC's password on
stdin (`{"password": "..."}`, a Pulumi secret): it never takes a secret as an argument and never
prints one. What it sends is plans.power's (the requests, in order); this module only speaks HTTP,
with the standard library.

The BMC (bmcd, firmware 2.x) serves its API over HTTPS with a self-signed certificate that the
firmware generates, as the Turing Pi docs say, so the certificate is not checked (the `tpi` tool
does the same); the provisioning LAN is trusted (docs/layers/netboot.md). Every wait is bounded by
`--timeout`; a BMC that does not answer yet (booting, busy) is asked again until then, but a
refused password is not: bmcd bans the caller's address after 5 wrong attempts.

Like `iluvatar upgrader`, it asks the kernel for SIGTERM when the shell pulumi-command runs it in dies
(iluvatar.lifeline: Ctrl-C, or the step's custom timeout): it stops at once, sends nothing more, and
says what it leaves. A flash it asked for goes on in the BMC (bmcd runs the transfer on its own; nothing
here can stop it): `pulumi up` run before it ends asks for the flash again (Talos does not answer yet), and
what bmcd does with a second flash while one runs was not checked against its source. Where `/bin/sh` runs the command in its own place (bash, busybox's ash), the SIGKILL is this
process's: it ends at once, silently, with the same effect on the BMC.

Exit codes: 0 the machine is on; 1 it is not (the message says which machine, which BMC and what
to check); 2 the command line or stdin is wrong.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import iluvatar
from iluvatar import lifeline
from plans import power as plan

REQUEST_SECONDS = 30.0  # one request's bound (connect, send, read)
RETRY_SECONDS = 2.0  # between two tries of a BMC that did not answer
PROGRESS_SECONDS = 30.0  # how often a long flash says how far it is


class PowerError(Exception):
    """The machine could not be powered on: the message says which, where and what to check."""


class UnreachableError(PowerError):
    """The BMC did not answer (connection refused, timed out, TLS failed): worth asking again."""


def duration(text: str) -> float:
    """`45m`, `300s` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 5m or 300s")
    return float(int(text[:-1]) * units[text[-1]])


@dataclass
class Bmc:
    """One BMC, one slot, one machine: the session `iluvatar power bmc` holds with bmcd."""

    url: str
    machine: str
    slot: int
    user: str
    password: str = field(repr=False)
    deadline: float
    timeout: float  # the seconds `deadline` is from the start (--timeout), named when a wait gives up
    out: Callable[[str], None] = print
    token: str | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        return f"{self.machine}: the BMC at {self.url} (slot {self.slot})"

    def _connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        host, port = parts.hostname or "", parts.port
        left = max(1.0, min(REQUEST_SECONDS, self.deadline - time.monotonic()))
        if parts.scheme == "http":  # only ever a test's stand-in: bmcd redirects http to https
            return http.client.HTTPConnection(host, port, timeout=left)
        # bmcd's certificate is self-signed by its firmware: encrypt, without checking whose it is.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(host, port, timeout=left, context=context)

    def _send(self, method: str, path: str, body: dict[str, str] | None = None, auth: bool = True) -> tuple[int, str]:
        headers = {"User-Agent": "iluvatar-power", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth and self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as e:
            raise UnreachableError(f"{self.where} does not answer ({e.__class__.__name__}: {e})") from None
        finally:
            conn.close()

    def _retrying(self, what: str, call: Callable[[], Any]) -> Any:
        """`call`, asked again while the BMC does not answer, until the deadline."""
        while True:
            try:
                return call()
            except UnreachableError as e:
                if time.monotonic() + RETRY_SECONDS >= self.deadline:
                    raise PowerError(
                        f"{e}, while {what}; asked again until its bound of {self.timeout:g} s (--timeout), then gave up; check that the BMC is powered, on the LAN and answers https://{urlsplit(self.url).netloc}/ in a browser"
                    ) from None
                time.sleep(RETRY_SECONDS)

    # --- the API --------------------------------------------------------------------------------

    def login(self) -> None:
        """POST /api/bmc/authenticate: a bearer token for the requests that follow."""

        def once() -> None:
            status, text = self._send("POST", plan.AUTHENTICATE, {"username": self.user, "password": self.password}, auth=False)
            if status == 403:
                # Never retried: bmcd bans the address after 5 wrong attempts (longer each time).
                raise PowerError(
                    f"{self.where} refused the login of {self.user} ({text.strip() or 'forbidden'}); check the password set with "
                    f"`pulumi config set --secret --path '{_password_path(self.url)}' <password>` and the user name "
                    "(power.bmc.username); after 5 wrong attempts the BMC refuses this address for a while"
                )
            if status != 200:
                raise PowerError(f"{self.where} answered the login with HTTP {status}: {text.strip()[:200]}")
            try:
                token = json.loads(text)["id"]
            except (ValueError, KeyError, TypeError):
                raise PowerError(
                    f"{self.where} answered the login without a token ({text.strip()[:200]}); is it a Turing Pi 2 BMC on firmware 2.x?"
                ) from None
            self.token = str(token)

        self._retrying("logging in", once)

    def _api(self, what: str, path: str) -> Any:
        """One GET of the legacy API, its body parsed; a token that expired is renewed once."""

        def once() -> Any:
            status, text = self._send("GET", path)
            if status == 401:
                self.login()
                status, text = self._send("GET", path)
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            if status != 200:
                raise PowerError(f"{self.where} refused to {what} (HTTP {status}: {_result(body) or text.strip()[:200]})")
            return body

        return self._retrying(what, once)

    def powered(self) -> bool:
        """GET ?opt=get&type=power: whether the machine's slot is on."""
        body = self._api("read the slots' power", plan.power_query())
        states = _result(body)
        if not isinstance(states, list) or not states or not isinstance(states[0], dict) or f"node{self.slot}" not in states[0]:
            raise PowerError(f"{self.where} answered the power query with {json.dumps(body)[:200]}; is it a Turing Pi 2 BMC on firmware 2.x?")
        return str(states[0][f"node{self.slot}"]) == "1"

    def power_on(self) -> None:
        """Switch the slot on unless it is on, then read it back until it says so."""
        if self.powered():
            self.out(f"{self.where} is on (it already was)")
            return
        self._api("switch the slot on", plan.power_on_query(self.slot))
        while not self.powered():
            if time.monotonic() + RETRY_SECONDS >= self.deadline:
                raise PowerError(
                    f"{self.where} took the power-on request, but still reports the slot off; check the module is seated in slot {self.slot}"
                )
            time.sleep(RETRY_SECONDS)
        self.out(f"{self.where} is on")

    def flash(self, image: str) -> None:
        """Flash the slot from `image`, a URL the BMC downloads itself, and wait for the BMC to finish."""
        started = self._api(f"flash from {image}", plan.flash_query(self.slot, image))
        handle = started.get("handle") if isinstance(started, dict) else None
        if handle is None:
            raise PowerError(f"{self.where} did not start flashing: {json.dumps(started)[:200]}")
        self.out(f"{self.where} is flashing {image} (transfer {handle})")
        said = time.monotonic()
        while True:
            state = self._api("report the flash", plan.flash_status_query())
            if isinstance(state, dict) and "Done" in state:
                self.out(f"{self.where} flashed {image}")
                return
            if isinstance(state, dict) and "Error" in state:
                raise PowerError(
                    f"{self.where} failed to flash {image}: {state['Error']}; check the BMC reaches that URL (DNS, internet) and its log"
                )
            if isinstance(state, dict) and "Transferring" in state:
                progress = state["Transferring"]
                if progress.get("id") not in (None, handle):
                    raise PowerError(
                        f"{self.where} is running another transfer ({progress.get('id')}), not ours ({handle}); wait for it and run again"
                    )
                if time.monotonic() - said >= PROGRESS_SECONDS:
                    self.out(f"{self.where}: {progress.get('bytes_written', 0)} of {progress.get('size', '?')} bytes written")
                    said = time.monotonic()
            elif state != "Ready":
                raise PowerError(f"{self.where} reports the flash as {json.dumps(state)[:200]}")
            if time.monotonic() + RETRY_SECONDS >= self.deadline:
                raise PowerError(f"{self.where} is still flashing {image} at the time limit; see its web UI, then run `pulumi up` again")
            time.sleep(RETRY_SECONDS)


def _result(body: Any) -> Any:
    """bmcd's legacy wrapper, `{"response": [{"result": ...}]}`, unwrapped (None when it is not one)."""
    try:
        return body["response"][0]["result"]
    except (KeyError, IndexError, TypeError):
        return None


def _password_path(url: str) -> str:
    return f'iluvatar:bmcPasswords["{urlsplit(url).hostname}"]'


def talos_answers(address: str, seconds: float) -> bool:
    """Whether Talos's API (or its maintenance service) accepts a connection at `host:port` within `seconds`."""
    host, _, port = address.rpartition(":")
    until = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(5.0, max(0.5, until - time.monotonic()))):
                return True
        except OSError:
            if time.monotonic() + RETRY_SECONDS >= until:
                return False
            time.sleep(RETRY_SECONDS)


def run_bmc(args: argparse.Namespace, password: str, out: Callable[[str], None] = print) -> None:
    bmc = Bmc(args.bmc, args.machine, args.slot, args.user, password, time.monotonic() + args.timeout, args.timeout, out)
    bmc.login()
    if args.flash is None:
        bmc.power_on()
        return
    # Flash only a machine where Talos does not answer: running, or in maintenance mode, it is installed.
    if talos_answers(args.talos, 0):
        out(f"{args.machine}: Talos answers at {args.talos}; not flashing")
        bmc.power_on()
        return
    bmc.power_on()
    probe = min(args.probe, max(0.0, bmc.deadline - time.monotonic()))
    if talos_answers(args.talos, probe):
        out(f"{args.machine}: Talos answers at {args.talos}; not flashing")
        return
    out(f"{args.machine}: Talos does not answer at {args.talos} after {int(probe)} s on; flashing")
    try:
        bmc.flash(args.flash)
    except lifeline.Stopped as e:
        raise PowerError(
            f"{bmc.where}: stopped by {e} while the BMC flashes {args.flash}: the flash goes on in the BMC, which runs it on "
            "its own (its web UI shows it); let it finish before the next `pulumi up`, which otherwise asks for the flash again"
        ) from None
    # bmcd leaves a slot it flashed off.
    bmc.power_on()


def read_password(stream: Any) -> str:
    try:
        given = json.loads(stream.read() or "null")
    except ValueError:
        given = None
    if not isinstance(given, dict) or not isinstance(given.get("password"), str) or not given["password"]:
        raise ValueError('stdin is not {"password": "..."}: `pulumi up` passes the BMC password there (iluvatar:bmcPasswords)')
    return str(given["password"])


def add_parser(sub: Any) -> None:
    """`iluvatar power ...` in the `iluvatar` command (iluvatar.cli)."""
    p = sub.add_parser("power", help="power an Arda machine on, as pulumi up does (plans.power)")
    kinds = p.add_subparsers(dest="power", required=True, metavar="HOW")
    b = kinds.add_parser("bmc", help='through a Turing Pi 2 BMC; stdin: {"password": "..."}')
    b.add_argument("--machine", required=True, help="the machine's name, for messages")
    b.add_argument("--bmc", required=True, metavar="URL", help="the BMC, e.g. https://10.10.0.5")
    b.add_argument("--slot", required=True, type=int, choices=range(1, 5), help="the machine's slot, 1 to 4")
    b.add_argument("--user", default="root", help="the BMC's user (default root)")
    b.add_argument("--flash", metavar="IMAGE_URL", help="flash the slot from this disk image first, if Talos does not answer at --talos")
    b.add_argument("--talos", metavar="IP:PORT", help="where the machine's Talos API answers (required with --flash)")
    b.add_argument("--probe", type=duration, default=float(plan.PROBE_SECONDS), help="how long Talos gets to answer after power-on (default 300s)")
    b.add_argument("--timeout", type=duration, default=duration(plan.BMC_TIMEOUT), help="the bound on the whole step (default 5m)")
    b.set_defaults(run=_main)


def _main(args: argparse.Namespace) -> int:
    if args.flash is not None and args.talos is None:
        print("error: --flash needs --talos IP:PORT (a machine where Talos answers is never flashed)", file=sys.stderr)
        return 2
    try:
        password = read_password(sys.stdin)
    except ValueError as e:
        print(f"error: {args.machine}: {e}", file=sys.stderr)
        return 2
    if not lifeline.arm(iluvatar.PARENT):
        print(f"error: {args.machine}: its parent (pid {iluvatar.PARENT}) ended before it started: nothing sent to the BMC", file=sys.stderr)
        return 1
    try:
        with lifeline.signals_raise():
            run_bmc(args, password, out=lambda line: print(line, flush=True))
    except lifeline.Stopped as e:
        print(f"error: {args.machine}: stopped by {e}: nothing more sent to the BMC; the next `pulumi up` runs the step again", file=sys.stderr)
        return 1
    except PowerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m iluvatar.power bmc ...`, the same as `iluvatar power bmc ...`."""
    parser = argparse.ArgumentParser(prog="iluvatar")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["power", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
