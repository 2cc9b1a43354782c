"""The app registry: the category list both the edge and GitOps read, and the registry's rules beyond the fixtures."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from stacks import StackConfigError, parse_stack, read_stack_file
from stacks.apps import zone_of
from stacks.categories import DEFAULT_CATEGORIES, known_categories
from stacks.model import App, Edge, Network
from stacks.rules import Parsed, check
from tests.edit import RK1, homelab_stack_file


def test_known_categories_are_the_defaults_then_the_stacks_own_once_each() -> None:
    assert known_categories() == DEFAULT_CATEGORIES
    assert known_categories(["games", "media", "games", "backup"]) == (*DEFAULT_CATEGORIES, "games", "backup")


def test_a_stack_category_makes_an_app_category_known() -> None:
    """The rule reads known_categories(Parsed.extra_categories): what the GitOps layer's categories feed."""
    app = App.model_validate({"name": "minecraft", "category": "games", "host": "mc.turing.home.arpa", "service": {"port": 25565}})
    network = Network.model_validate(read_stack_file(RK1).config["iluvatar:network"])
    parsed = Parsed(network=network, ainur=None, ainur_set=False, arda=None, nodes=(), nodes_complete=False, apps=[(0, app)], edge=Edge())
    assert [str(p) for p in check(parsed)] == [
        "iluvatar:apps[0].category: games is not a known category (known: ai, banking, home-automation, media, monitoring, networking, security, selfhosted, system)"
    ]
    assert check(replace(parsed, extra_categories=("games",))) == []


def _rk1_with_apps(apps: list[dict[str, Any]]) -> dict[str, Any]:
    raw = dict(read_stack_file(RK1).config)
    raw["iluvatar:apps"] = apps
    # rk1's monitoring names its Grafana app; these tests are about the apps alone.
    raw.pop("iluvatar:monitoring", None)
    return raw


def test_rk1_with_internal_apps_needs_no_cloudflare() -> None:
    stack = parse_stack(
        _rk1_with_apps([{"name": "grafana", "category": "monitoring", "host": "grafana.turing.home.arpa", "service": {"port": 3000}}])
    )
    assert (stack.public_ingress, stack.public_dns, stack.uses_cloudflare) == ("none", "none", False)
    assert stack.apps[0].service_name == "grafana" and stack.apps[0].namespace == "monitoring"


def test_an_external_app_without_an_external_domain_names_its_audience() -> None:
    raw = _rk1_with_apps(
        [{"name": "blog", "category": "selfhosted", "host": "blog.turing.home.arpa", "audience": "external", "service": {"port": 80}}]
    )
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw)
    assert [str(p) for p in err.value.problems] == [
        "iluvatar:apps[0].audience: external, but iluvatar:edge.publicIngress is none, so nothing carries it from the internet; "
        "set publicIngress: cloudflare-tunnel or make the app internal",
        "iluvatar:apps[0].audience: external needs network.externalDomain, the public zone its record is published in",
    ]


def test_the_zone_apex_and_deeper_counts() -> None:
    network = Network.model_validate(homelab_stack_file().config["iluvatar:network"])
    assert zone_of("example.com", network) == "example.com"
    assert zone_of("iluvatar.home.arpa", network) == "iluvatar.home.arpa"
    assert zone_of("notexample.com", network) is None
    nested = network.model_copy(update={"domain": "home.example.com"})
    assert zone_of("hass.home.example.com", nested) == "home.example.com", "the longer zone wins"
    raw = dict(homelab_stack_file().config)
    raw["iluvatar:apps"] = [{"name": "x", "category": "ai", "host": "a.b.c.d.example.com", "service": {"port": 1}}]
    # Grafana's and Headlamp's apps are gone: the homelab's monitoring and Headlamp go with them.
    raw.pop("iluvatar:monitoring"), raw.pop("iluvatar:alertReceiverSecret")
    raw["iluvatar:identity"] = {k: v for k, v in raw["iluvatar:identity"].items() if k != "headlamp"}
    with pytest.raises(StackConfigError) as err:
        parse_stack(raw, homelab_stack_file().secret_keys)
    assert [str(p) for p in err.value.problems] == [
        "iluvatar:apps[0].host: a.b.c.d.example.com is four labels below example.com; the gateways' wildcard certificate *.example.com "
        "covers names one label below it, such as d.example.com"
    ]


def test_an_apex_host_is_covered() -> None:
    raw = dict(homelab_stack_file().config)
    raw["iluvatar:apps"] = [{"name": "site", "category": "selfhosted", "host": "example.com", "audience": "external", "service": {"port": 80}}]
    # Grafana's and Headlamp's apps are gone: the homelab's monitoring and Headlamp go with them.
    raw.pop("iluvatar:monitoring"), raw.pop("iluvatar:alertReceiverSecret")
    raw["iluvatar:identity"] = {k: v for k, v in raw["iluvatar:identity"].items() if k != "headlamp"}
    stack = parse_stack(raw, homelab_stack_file().secret_keys)
    assert stack.apps[0].host == "example.com"


def test_a_host_network_apps_forbidden_ports_include_the_programs_own_host_network_listeners_on_arda() -> None:
    """stacks cannot import plans, so the machine's listeners are written there: held equal to the plans' ports."""
    from plans import logs, monitoring
    from stacks import talos_ports
    from stacks.apps import NODE_LISTENERS

    assert NODE_LISTENERS[(logs.TELEMETRY_PORT, "tcp")] == "kept for the log collector's telemetry (with logs) on every Arda machine"
    assert NODE_LISTENERS[(logs.SERVICE_PORT, "tcp")].startswith("kept for the log collector's receiver of Talos's service logs ")
    assert NODE_LISTENERS[(logs.KERNEL_PORT, "tcp")].startswith("kept for the log collector's receiver of Talos's kernel messages ")
    assert NODE_LISTENERS[(monitoring.NODE_EXPORTER_PORT, "tcp")] == "kept for node-exporter (with monitoring) on every Arda machine"
    assert NODE_LISTENERS[(talos_ports.KUBEPRISM_PORT, "tcp")].startswith("taken by KubePrism, ")


def _arda_namespaces(files: dict[str, str]) -> set[str]:
    """Every namespace Arda's rendered objects live in, Namespace objects name, or a platform Application deploys into."""
    import yaml

    found = set()
    for name, text in files.items():
        parts = name.split("/")
        if parts[:2] != ["kubernetes", "arda"]:
            continue
        if parts[2] != "_cluster":
            found.add(parts[2])
        elif parts[3].startswith("Namespace-"):
            found.add(parts[3].removeprefix("Namespace-").removesuffix(".yaml"))
        if parts[2] == "argocd" and parts[3].startswith("Application-"):
            found.add(yaml.safe_load(text)["spec"]["destination"]["namespace"])
    return found


def test_the_namespaces_a_client_may_name_are_those_arda_has() -> None:
    # The rule's list of Iluvatar's own namespaces (stacks.categories.ARDA_NAMESPACES) against what renders on Arda:
    # the homelab (Ceph, backups, drills, monitoring, External Secrets), rk1 (local-path) and Tailscale's operator.
    import tempfile
    from pathlib import Path

    from iluvatar.render import kubernetes_files
    from iluvatar.simulate import simulate
    from stacks.categories import ARDA_NAMESPACES
    from tests.edit import HOMELAB, write_stack
    from tests.remote_stacks import TAILSCALE, remote_doc
    from tests.sims import simulated

    tailscale = read_stack_file(write_stack(Path(tempfile.mkdtemp(prefix="iluvatar-ns-")), remote_doc(TAILSCALE)))
    runs = [simulated(HOMELAB), simulated(RK1), simulate(tailscale)]
    rendered = set().union(*(_arda_namespaces(kubernetes_files(run)) for run in runs)) - set(DEFAULT_CATEGORIES)
    assert rendered <= set(ARDA_NAMESPACES), sorted(rendered - set(ARDA_NAMESPACES))
    assert "tailscale" in rendered and "rook-ceph" in rendered and "local-path-storage" in rendered
