"""Cloudflare plan: the tunnel's configuration read by cloudflared's own code, and the cloudflared Deployment.

tools/cloudflared-check runs cloudflared's loader of a remotely managed tunnel's configuration
(ingress.RemoteConfig, what a connector does with the JSON Cloudflare sends it). The Go module
proxy serves cloudflared only at commits someone fetched; the newest here is
v0.0.0-20250203150802-c19f9194281e (2025.1.1 and four days of commits), older than the image the
program runs (2025.11.1): the ingress rules' format and checks are the part this proves.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

from plans import cloudflare
from stacks import StackConfig, load_stack_file, parse_stack, read_stack_file
from tests.edit import HOMELAB, RK1
from tests.sims import simulated
from tools import gotools, upstream


@functools.cache
def _stack(path: Any = HOMELAB) -> StackConfig:
    return load_stack_file(path)


def cloudflared(config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(gotools.build("cloudflared-check"))], input=json.dumps(config), capture_output=True, text=True, timeout=60)


def test_one_rule_per_external_host_then_the_catch_all() -> None:
    assert cloudflare.tunnel_config(_stack()) == {
        "ingress": [
            {
                "hostname": "www.example.com",
                "service": "https://envoy-external.networking.svc.cluster.local:443",
                "originRequest": {"originServerName": "www.example.com"},
            },
            {"service": "http_status:404"},
        ]
    }
    assert cloudflare.tunnel_name(_stack()) == "iluvatar-arda"


def test_cloudflared_loads_the_configuration_the_program_sends() -> None:
    """The tunnel config resource's inputs, as the provider sends them to Cloudflare's API, read by cloudflared."""
    sim = simulated(HOMELAB)
    [config] = sim.by_type("cloudflare:index/zeroTrustTunnelCloudflaredConfig:ZeroTrustTunnelCloudflaredConfig")
    # The SDK names the list `ingresses`; the API (and cloudflared) call it `ingress`.
    sent = {"ingress": config.inputs["config"]["ingresses"]}
    assert sent == cloudflare.tunnel_config(_stack())
    result = cloudflared(sent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "www.example.com\thttps://envoy-external.networking.svc.cluster.local:443\twww.example.com",
        "\thttp_status:404\t",
    ]


def test_many_external_apps_each_get_their_rule(tmp_path: Path) -> None:
    sf = read_stack_file(HOMELAB)
    apps = [
        {"name": f"site-{i}", "category": "selfhosted", "host": f"site-{i}.example.com", "audience": "external", "service": {"port": 80}}
        for i in range(12)
    ]
    stack = parse_stack({**sf.config, "iluvatar:apps": [*sf.config["iluvatar:apps"], *apps]}, sf.secret_keys)
    result = cloudflared(cloudflare.tunnel_config(stack))
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        *sorted(f"site-{i}.example.com" for i in range(12)),
        "www.example.com",
        "",
    ]


def test_cloudflared_refuses_a_configuration_without_its_catch_all() -> None:
    """Guards the tests above: cloudflared's own validation runs, and says why."""
    broken = cloudflare.tunnel_config(_stack())
    broken["ingress"] = broken["ingress"][:-1]
    result = cloudflared(broken)
    assert result.returncode == 1
    assert result.stderr.strip() == "The last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"


def test_the_deployment_reads_the_token_from_its_secret_and_is_pinned() -> None:
    deployment = cloudflare.cloudflared_deployment(_stack())
    spec = deployment["spec"]
    assert (spec["replicas"], deployment["metadata"]["namespace"]) == (2, "networking")
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == "docker.io/cloudflare/cloudflared:2025.11.1"
    assert container["args"] == ["tunnel", "--no-autoupdate", "--metrics", "0.0.0.0:2000", "run"]
    assert container["env"] == [{"name": "TUNNEL_TOKEN", "valueFrom": {"secretKeyRef": {"name": "cloudflared-token", "key": "token"}}}]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert spec["template"]["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert upstream.kubeconform([deployment], _stack().arda.kubernetes_version) == []


def test_no_tunnel_config_for_a_stack_without_external_apps() -> None:
    assert cloudflare.external_hosts(_stack(RK1)) == []
    assert cloudflare.tunnel_config(_stack(RK1)) == {"ingress": [{"service": "http_status:404"}]}


def test_the_connectors_spread_report_ready_and_hold_no_api_token() -> None:
    """The rest of the pod spec: two connectors on two machines (one machine's loss keeps the tunnel up),
    probed on cloudflared's own /ready, with no Kubernetes API token mounted."""
    deployment = cloudflare.cloudflared_deployment(_stack())
    labels = {"app.kubernetes.io/name": "cloudflared"}
    assert deployment["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "iluvatar", **labels}
    assert (deployment["spec"]["selector"], deployment["spec"]["template"]["metadata"]) == ({"matchLabels": labels}, {"labels": labels})
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}}
            ]
        }
    }
    [container] = pod["containers"]
    assert container["name"] == "cloudflared"
    assert container["ports"] == [{"name": "metrics", "containerPort": 2000, "protocol": "TCP"}]
    ready = {"httpGet": {"path": "/ready", "port": "metrics"}, "periodSeconds": 10}
    assert (container["readinessProbe"], container["livenessProbe"]) == (ready, {**ready, "failureThreshold": 6})
    assert container["resources"] == {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
