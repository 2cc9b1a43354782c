"""Envoy Gateway's own translator (egctl x translate, v1.9.0) accepts every gateway and route the program creates.

The objects are the program's, from a mock run of __main__.py for each stack (tools.gateway_check);
what the cluster adds at run time (the certificates' Secrets, the apps' Services) is stood in for.
Each check is also shown to refuse a broken input, so a pass means something.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest

from iluvatar.render import redact
from iluvatar.simulate import Simulation, simulate
from plans import gateways
from stacks import read_stack_file
from tests.edit import HOMELAB, RK1, edit, homelab_doc, write_stack
from tests.sims import simulated
from tools import gateway_check


def _sim(path: Path) -> Simulation:
    return simulated(path)


@functools.cache
def _checked(path: Path) -> tuple[tuple[gateway_check.Status, ...], dict[str, Any]]:
    found, translated = gateway_check.check(_sim(path))
    return tuple(found), translated


def _table(found: Any) -> list[tuple[str, str, str, str]]:
    """(kind, name, section, Accepted status/reason) for each object."""
    return [(s.kind, s.name, s.section, "/".join(s.conditions["Accepted"][:2])) for s in found]


def test_homelab_every_gateway_listener_and_route_is_accepted() -> None:
    found, _ = _checked(HOMELAB)
    assert _table(found) == [
        ("Gateway", "networking/envoy-external", "", "True/Accepted"),
        ("Gateway", "networking/envoy-external", "http", "True/Accepted"),
        ("Gateway", "networking/envoy-external", "https", "True/Accepted"),
        ("Gateway", "networking/envoy-internal", "", "True/Accepted"),
        ("Gateway", "networking/envoy-internal", "http", "True/Accepted"),
        ("Gateway", "networking/envoy-internal", "https", "True/Accepted"),
        # Sign-in's route to Arda's Argo CD (plans.identity), Grafana's and Headlamp's as registry apps.
        ("HTTPRoute", "argocd/argocd-server", "networking/envoy-internal/https", "True/Accepted"),
        ("HTTPRoute", "home-automation/home-assistant", "networking/envoy-internal/https", "True/Accepted"),
        ("HTTPRoute", "media/jellyfin", "networking/envoy-internal/https", "True/Accepted"),
        ("HTTPRoute", "monitoring/grafana", "networking/envoy-internal/https", "True/Accepted"),
        ("HTTPRoute", "networking/https-redirect", "networking/envoy-external/http", "True/Accepted"),
        ("HTTPRoute", "networking/https-redirect", "networking/envoy-internal/http", "True/Accepted"),
        ("HTTPRoute", "selfhosted/blog", "networking/envoy-external/https", "True/Accepted"),
        ("HTTPRoute", "system/headlamp", "networking/envoy-internal/https", "True/Accepted"),
    ]
    listeners = [s for s in found if s.kind == "Gateway" and s.section]
    assert all(s.ok("Programmed") and s.ok("ResolvedRefs") for s in listeners), [str(s) for s in listeners]
    routes = [s for s in found if s.kind == "HTTPRoute"]
    assert all(s.ok("ResolvedRefs") for s in routes), [str(s) for s in routes]


def test_rk1_has_only_the_internal_gateway_and_its_routes_are_accepted() -> None:
    found, _ = _checked(RK1)
    assert _table(found) == [
        ("Gateway", "networking/envoy-internal", "", "True/Accepted"),
        ("Gateway", "networking/envoy-internal", "http", "True/Accepted"),
        ("Gateway", "networking/envoy-internal", "https", "True/Accepted"),
        ("HTTPRoute", "home-automation/home-assistant", "networking/envoy-internal/https", "True/Accepted"),
        ("HTTPRoute", "monitoring/grafana", "networking/envoy-internal/https", "True/Accepted"),
        ("HTTPRoute", "networking/https-redirect", "networking/envoy-internal/http", "True/Accepted"),
    ]


def test_each_gateway_routes_exactly_its_audiences_hosts() -> None:
    """Envoy's own route configuration: an internal host is never served on envoy-external."""
    _, translated = _checked(HOMELAB)
    assert gateway_check.virtual_hosts(translated) == {
        "networking/envoy-external": {"http": ["*"], "https": ["www.example.com"]},
        "networking/envoy-internal": {
            "http": ["*"],
            "https": [
                "argocd.iluvatar.home.arpa",
                "grafana.iluvatar.home.arpa",
                "hass.iluvatar.home.arpa",
                "headlamp.iluvatar.home.arpa",
                "jellyfin.example.com",
            ],
        },
    }


def test_the_gateway_class_and_its_envoy_proxy_are_accepted() -> None:
    _, translated = _checked(HOMELAB)
    assert [(c["type"], c["status"]) for c in translated["gatewayClass"]["status"]["conditions"]] == [("Accepted", "True")]
    proxy = translated["envoyProxyForGatewayClass"]
    assert (proxy["metadata"]["namespace"], proxy["metadata"]["name"]) == ("envoy-gateway-system", "envoy")
    assert proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["replicas"] == 2


@pytest.fixture(scope="module")
def homelab_objects(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The homelab's objects and cert-manager's Secrets for its Certificates (their keys in pytest's
    temporary directory, which it cleans, not a directory of their own in /tmp that outlived the run)."""
    sim = _sim(HOMELAB)
    objects = gateway_check.program_objects(sim)
    certificates = [redact(r.inputs) for r in sim.by_type("kubernetes:cert-manager.io/v1:Certificate")]
    return objects + gateway_check.certificate_secrets(certificates, tmp_path_factory.mktemp("certs"))


def test_a_route_on_the_redirect_listener_is_refused(homelab_objects: list[dict[str, Any]]) -> None:
    objects = copy.deepcopy(homelab_objects)
    [blog] = [o for o in objects if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "blog"]
    blog["spec"]["parentRefs"][0]["sectionName"] = "http"  # http admits only its own namespace's routes
    found = gateway_check.statuses(gateway_check.translate(objects))
    [status] = [s for s in found if s.name == "selfhosted/blog"]
    assert status.conditions["Accepted"][:2] == ("False", "NotAllowedByListeners")


def test_a_listener_without_its_certificate_is_not_programmed(homelab_objects: list[dict[str, Any]]) -> None:
    objects = [o for o in homelab_objects if not (o["kind"] == "Secret" and o["metadata"]["name"] == "wildcard-external-tls")]
    found = {(s.name, s.section): s for s in gateway_check.statuses(gateway_check.translate(objects))}
    https = found[("networking/envoy-external", "https")]
    assert https.conditions["ResolvedRefs"][:2] == ("False", "InvalidCertificateRef")
    assert https.conditions["Programmed"][:2] == ("False", "Invalid")
    assert found[("networking/envoy-external", "http")].ok("Programmed"), "only the listener with the missing certificate"


def test_an_invalid_object_is_refused_when_loaded(homelab_objects: list[dict[str, Any]]) -> None:
    objects = copy.deepcopy(homelab_objects)
    [gateway] = [o for o in objects if o["kind"] == "Gateway" and o["metadata"]["name"] == "envoy-internal"]
    gateway["spec"]["listeners"][1]["port"] = 70000
    with pytest.raises(gateway_check.TranslateError, match="local validation error"):
        gateway_check.translate(objects)


def test_a_new_app_is_routed_on_its_gateway(tmp_path: Path) -> None:
    doc = homelab_doc()
    apps = [
        *doc["config"]["iluvatar:apps"],
        {"name": "status", "category": "monitoring", "host": "status.example.com", "audience": "external", "service": {"port": 3001}},
    ]
    sim = simulate(read_stack_file(write_stack(tmp_path, edit(doc, {"iluvatar:apps": apps}), stack="homelab")))
    found, translated = gateway_check.check(sim)
    [status] = [s for s in found if s.name == "monitoring/status"]
    assert (status.section, status.ok(), status.ok("ResolvedRefs")) == ("networking/envoy-external/https", True, True)
    assert gateway_check.virtual_hosts(translated)["networking/envoy-external"]["https"] == ["status.example.com", "www.example.com"]


def test_the_objects_checked_are_the_programs() -> None:
    """Guards the checks above: egctl sees every Gateway API object the program registers, unchanged."""
    sim = _sim(HOMELAB)
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in gateway_check.program_objects(sim) if o["kind"] != "Namespace")
    registered = sorted(
        (r.type.rsplit(":", 1)[1], r.inputs["metadata"]["name"]) for r in sim.registrations if r.type.startswith("kubernetes:gateway.")
    )
    assert kinds == registered
    # The edge's, and sign-in's route to Arda's Argo CD (components.identity registers it).
    assert len(kinds) == len(gateways.manifests(read_stack_file(HOMELAB).parse())) + 1
    assert ("HTTPRoute", "argocd-server") in kinds


def test_conflicting_listeners_leave_the_gateway_not_accepted(homelab_objects: list[dict[str, Any]]) -> None:
    objects = copy.deepcopy(homelab_objects)
    [gateway] = [o for o in objects if o["kind"] == "Gateway" and o["metadata"]["name"] == "envoy-internal"]
    gateway["spec"]["listeners"][0]["port"] = 443  # http and https on one port
    found = {(s.name, s.section): s for s in gateway_check.statuses(gateway_check.translate(objects))}
    assert found[("networking/envoy-internal", "")].conditions["Accepted"][:2] == ("False", "ListenersNotValid")
    assert found[("networking/envoy-internal", "https")].conditions["Conflicted"][:2] == ("True", "ProtocolConflict")
    assert found[("networking/envoy-external", "")].ok(), "the other gateway is untouched"
