"""The gateway acceptance check: Envoy Gateway's own translator on exactly what the program creates.

`egctl x translate` (tools/egctl: github.com/envoyproxy/gateway at the chart's version) runs the
controller's Gateway API translation offline: it loads the objects as the controller would (with
its own validation and defaulting), translates them to Envoy configuration and sets the status the
controller would write. This check hands it the program's objects, taken from a mock run of
`__main__.py` (the GatewayClass, the EnvoyProxy, the Gateways and every HTTPRoute, with the
namespaces), plus what the cluster would hold that the program does not create: the wildcard
certificates' Secrets (cert-manager issues them at run time; here a throwaway self-signed
certificate per Certificate, with its exact DNS names, made by openssl) and the apps' Services
(GitOps deploys them; egctl adds stand-ins with `--add-missing-resources`).

    python -m tools.gateway_check Pulumi.homelab.yaml [...]    # one line per gateway, listener and route
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import gotools

GATEWAY_GROUPS = ("gateway.networking.k8s.io/", "gateway.envoyproxy.io/")


@dataclass(frozen=True)
class Status:
    """One object's conditions as the translator set them: kind, namespace/name, (section), conditions."""

    kind: str
    name: str
    section: str
    conditions: dict[str, tuple[str, str, str]]  # type -> (status, reason, message)

    def ok(self, condition: str = "Accepted") -> bool:
        return self.conditions.get(condition, ("", "", ""))[0] == "True"

    def __str__(self) -> str:
        where = f"{self.kind} {self.name}" + (f" [{self.section}]" if self.section else "")
        return where + ": " + ", ".join(f"{t}={s} ({r})" for t, (s, r, _) in sorted(self.conditions.items()))


def program_objects(sim: Any) -> list[dict[str, Any]]:
    """The Gateway API and Envoy Gateway objects and the Namespaces a simulation registered, as manifests."""
    from iluvatar.render import redact

    out = []
    for reg in sim.registrations:
        if not reg.type.startswith("kubernetes:") or not reg.custom:
            continue
        _, api, kind = reg.type.split(":")
        api = api.removeprefix("core/")
        if api.startswith(GATEWAY_GROUPS) or kind == "Namespace":
            inputs = redact(reg.inputs)
            out.append({"apiVersion": api, "kind": kind, **{k: v for k, v in inputs.items() if k not in ("apiVersion", "kind")}})
    return out


def certificate_secrets(certificates: Iterable[Mapping[str, Any]], workdir: Path) -> list[dict[str, Any]]:
    """A kubernetes.io/tls Secret per cert-manager Certificate, as cert-manager would write it: a
    throwaway self-signed certificate for exactly the Certificate's DNS names."""
    import base64

    secrets = []
    for cert in certificates:
        spec, meta = cert["spec"], cert["metadata"]
        key, crt = workdir / f"{meta['name']}.key", workdir / f"{meta['name']}.crt"
        san = ",".join(f"DNS:{n}" for n in spec["dnsNames"])
        openssl = shutil.which("openssl") or "/usr/bin/openssl"
        subprocess.run(  # noqa: S603 - a fixed command line
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
             "-subj", f"/CN={spec['dnsNames'][0]}", "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(crt)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        secrets.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": spec["secretName"], "namespace": meta["namespace"]},
                "data": {"tls.crt": base64.b64encode(crt.read_bytes()).decode(), "tls.key": base64.b64encode(key.read_bytes()).decode()},
            }
        )
    return secrets


class TranslateError(Exception):
    """egctl refused the input outright (a load or validation error), with its message."""


def translate(objects: Iterable[Mapping[str, Any]], outputs: str = "gateway-api") -> dict[str, Any]:
    """`egctl x translate --from gateway-api --to <outputs> --add-missing-resources` on the objects."""
    egctl = gotools.build("egctl")
    with tempfile.TemporaryDirectory(prefix="iluvatar-egctl-") as tmp:
        path = Path(tmp) / "objects.yaml"
        path.write_text("".join("---\n" + json.dumps(o) + "\n" for o in objects))
        command = [str(egctl), "x", "translate", "--from", "gateway-api", "--to", outputs, "--add-missing-resources", "-o", "json", "-f", str(path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)  # noqa: S603
    if result.returncode != 0:
        raise TranslateError(result.stderr.strip() or result.stdout.strip())
    translated: dict[str, Any] = json.loads(result.stdout)
    return translated


def _conditions(items: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c.get("reason", ""), c.get("message", "")) for c in items}


def _gateway_accepted(status: Mapping[str, Any]) -> dict[str, tuple[str, str, str]]:
    """The Gateway's own conditions, with Accepted as the controller completes it.

    The translator sets a Gateway's Accepted only when it refuses the Gateway; the controller's
    status updater (internal/provider/kubernetes/status.go, status.UpdateGatewayStatusAccepted)
    then derives it from the listeners: True when all are accepted, True/ListenersNotValid when
    some are, False/ListenersNotValid when none is. The same rule is applied here.
    """
    conditions = _conditions(status.get("conditions") or [])
    if "Accepted" not in conditions:
        accepted = [_conditions(li.get("conditions") or []).get("Accepted", ("",))[0] == "True" for li in status.get("listeners") or []]
        if accepted and all(accepted):
            conditions["Accepted"] = ("True", "Accepted", "all listeners accepted")
        elif any(accepted):
            conditions["Accepted"] = ("True", "ListenersNotValid", "some listeners are not accepted")
        else:
            conditions["Accepted"] = ("False", "ListenersNotValid", "no listener is accepted")
    return conditions


def statuses(translated: Mapping[str, Any]) -> list[Status]:
    """Every Gateway, each of its listeners, and every HTTPRoute's status per parent, as set by the translator."""
    out = []
    for gw in translated.get("gateways") or []:
        name = f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"
        status = gw.get("status") or {}
        out.append(Status("Gateway", name, "", _gateway_accepted(status)))
        out += [Status("Gateway", name, li["name"], _conditions(li.get("conditions") or [])) for li in status.get("listeners") or []]
    for route in translated.get("httpRoutes") or []:
        name = f"{route['metadata']['namespace']}/{route['metadata']['name']}"
        for parent in (route.get("status") or {}).get("parents") or []:
            ref = parent["parentRef"]
            section = f"{ref.get('namespace', '')}/{ref['name']}/{ref.get('sectionName', '')}"
            out.append(Status("HTTPRoute", name, section, _conditions(parent.get("conditions") or [])))
    return out


def virtual_hosts(translated: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """The Envoy route configuration egctl produced: per gateway, per listener, the domains it routes."""
    out: dict[str, dict[str, list[str]]] = {}
    for gateway, dump in (translated.get("xds") or {}).items():
        routes = [c for c in dump["configs"] if c["@type"].endswith("RoutesConfigDump")]
        for config in routes[0].get("dynamicRouteConfigs") or [] if routes else []:
            route = config["routeConfig"]
            listener = route["name"].rsplit("/", 1)[-1]
            out.setdefault(gateway, {})[listener] = sorted(d for v in route.get("virtualHosts") or [] for d in v["domains"])
    return out


def check(sim: Any) -> tuple[list[Status], dict[str, Any]]:
    """The simulated program's gateways and routes through egctl: (statuses, the full translation)."""
    from iluvatar.render import redact

    objects = program_objects(sim)
    certificates = [redact(r.inputs) for r in sim.by_type("kubernetes:cert-manager.io/v1:Certificate")]
    with tempfile.TemporaryDirectory(prefix="iluvatar-certs-") as tmp:
        secrets = certificate_secrets(certificates, Path(tmp))
    translated = translate([*objects, *secrets], outputs="gateway-api,xds")
    return statuses(translated), translated


def main(argv: list[str]) -> int:
    from iluvatar.simulate import simulate
    from stacks import read_stack_file

    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    failed = False
    for path in argv:
        found, _ = check(simulate(read_stack_file(path)))
        for status in found:
            print(f"{path}: {status}")
            failed |= not status.ok()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
