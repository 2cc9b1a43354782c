"""components.cloudflare registers what pulumi-cloudflare's own classes would, without importing that SDK.

The oracle is the component as it was written with the SDK's classes (below, verbatim but for the
import): the homelab is run under the mock runtime once with each, and every request the engine would
receive (every RegisterResource and Invoke, the whole program's) must be the same, field by field, but for
the source position of the call.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pulumi
import pulumi_random as random
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]

from components import cloudflare as component
from components import kube
from iluvatar import simulate as sim_module
from iluvatar.simulate import simulate
from plans import cloudflare as cloudflare_plan
from plans import edge as plan
from stacks import read_stack_file
from tests.edit import HOMELAB, ROOT


def sdk_cloudflare(self: component.Cloudflare, name: str, args: component.CloudflareArgs, opts: pulumi.ResourceOptions | None = None) -> None:
    """The component with pulumi-cloudflare 6.23.1's classes, as components/edge.py had it before."""
    import pulumi_cloudflare as cloudflare
    import pulumi_kubernetes as k8s

    pulumi.ComponentResource.__init__(self, "iluvatar:edge:Cloudflare", name, None, opts)
    stack = args.stack
    assert stack.cloudflare is not None
    assert stack.network.external_domain is not None
    account = stack.cloudflare.account_id
    child = pulumi.ResourceOptions(parent=self)
    provider = cloudflare.Provider(f"{name}-provider", api_token=args.api_token, opts=child)
    random_provider = random.Provider(f"{name}-random", opts=child)
    tunnel_secret = random.RandomBytes(
        f"{name}-tunnel-secret",
        length=cloudflare_plan.TUNNEL_SECRET_BYTES,
        opts=pulumi.ResourceOptions(parent=self, provider=random_provider, additional_secret_outputs=["base64", "hex"]),
    )
    self.tunnel = cloudflare.ZeroTrustTunnelCloudflared(
        f"{name}-tunnel",
        account_id=account,
        name=cloudflare_plan.tunnel_name(stack),
        config_src="cloudflare",
        tunnel_secret=tunnel_secret.base64,
        opts=pulumi.ResourceOptions(parent=self, provider=provider, additional_secret_outputs=["tunnelSecret"]),
    )
    config = cloudflare_plan.tunnel_config(stack)
    cloudflare.ZeroTrustTunnelCloudflaredConfig(
        f"{name}-tunnel-config",
        account_id=account,
        tunnel_id=self.tunnel.id,
        config=cloudflare.ZeroTrustTunnelCloudflaredConfigConfigArgs(
            ingresses=[
                cloudflare.ZeroTrustTunnelCloudflaredConfigConfigIngressArgs(
                    service=rule["service"],
                    hostname=rule.get("hostname"),
                    origin_request=(
                        cloudflare.ZeroTrustTunnelCloudflaredConfigConfigIngressOriginRequestArgs(
                            origin_server_name=rule["originRequest"]["originServerName"]
                        )
                        if "originRequest" in rule
                        else None
                    ),
                )
                for rule in config["ingress"]
            ]
        ),
        opts=pulumi.ResourceOptions(parent=self, provider=provider),
    )
    token = cloudflare.get_zero_trust_tunnel_cloudflared_token_output(
        account_id=account, tunnel_id=self.tunnel.id, opts=pulumi.InvokeOutputOptions(parent=self, provider=provider)
    )
    self.tunnel_token = pulumi.Output.secret(token.token)
    networking = args.namespaces[plan.GATEWAY_NAMESPACE]
    token_secret = k8s.core.v1.Secret(
        f"{name}-cloudflared-token",
        metadata={"name": cloudflare_plan.TOKEN_SECRET, "namespace": plan.GATEWAY_NAMESPACE, "labels": dict(plan.MANAGED_BY)},
        type="Opaque",
        string_data={cloudflare_plan.TOKEN_KEY: self.tunnel_token},
        opts=pulumi.ResourceOptions(parent=self, depends_on=[networking]),
    )
    kube.create(name, cloudflare_plan.cloudflared_deployment(stack), pulumi.ResourceOptions(parent=self, depends_on=[networking, token_secret]))
    kube.create(name, cloudflare_plan.cloudflared_network_policy(), pulumi.ResourceOptions(parent=self, depends_on=[networking]))
    zone = cloudflare.get_zone_output(
        filter={"name": stack.network.external_domain, "match": "all"}, opts=pulumi.InvokeOutputOptions(parent=self, provider=provider)
    )
    target = self.tunnel.id.apply(lambda tunnel_id: f"{tunnel_id}.cfargotunnel.com")
    self.records = {
        record.app: cloudflare.DnsRecord(
            f"{name}-record-{record.app}",
            zone_id=zone.id,
            name=record.name,
            type=record.type,
            content=target,
            proxied=record.proxied,
            ttl=record.ttl,
            comment=cloudflare_plan.RECORD_COMMENT,
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        for record in plan.public_records(stack)
    }
    self.register_outputs({"tunnelId": self.tunnel.id, "tunnelToken": self.tunnel_token})


def run(with_sdk: bool = False, **kinds: component.Kind) -> list[str]:
    """Every RegisterResource and Invoke request of the homelab's run, as JSON, but for where in the source each was
    made: with the SDK's classes, or with the component (and `kinds` in place of its own)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    monitor = sim_module._RecordingMonitor

    def recording(method: str) -> Any:
        real = getattr(monitor, method)

        def record(self: Any, request: Any) -> Any:
            message = json_format.MessageToDict(request)
            message.pop("sourcePosition", None)
            message.pop("stackTrace", None)
            seen.append((method, message))
            return real(self, request)

        return record

    with pytest.MonkeyPatch.context() as m:
        for method in ("RegisterResource", "Invoke"):
            m.setattr(monitor, method, recording(method))
        if with_sdk:
            m.setattr(component.Cloudflare, "__init__", sdk_cloudflare)
        for name, kind in kinds.items():
            m.setattr(component, name, kind)
        simulate(read_stack_file(HOMELAB))
    return canonical(seen)


def canonical(seen: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The requests as sets: which registration comes first, and in what order its dependencies were listed, vary
    from run to run (the SDK resolves inputs concurrently); the engine reads both as sets."""
    out = []
    for method, request in seen:
        request = {**request, "dependencies": sorted(request.get("dependencies", []))}
        deps = request.get("propertyDependencies", {})
        request["propertyDependencies"] = {key: sorted(value.get("urns", [])) for key, value in deps.items()}
        out.append(json.dumps([method, request], sort_keys=True))
    return sorted(out)


@pytest.fixture(scope="module")
def with_sdk() -> list[str]:
    return run(with_sdk=True)


def test_the_program_sends_the_engine_what_the_sdk_classes_send(with_sdk: list[str]) -> None:
    ours = run()
    cloudflare = [r for m, r in map(json.loads, ours) if "cloudflare" in str(r.get("type", r.get("tok", "")))]
    # What the comparison covers: the provider, the tunnel, its config, the blog's record and both invokes.
    assert sorted(r.get("type", r.get("tok")) for r in cloudflare) == sorted(
        [
            component.GET_TUNNEL_TOKEN,
            component.GET_ZONE,
            component.DNS_RECORD.token,
            component.TUNNEL.token,
            component.TUNNEL_CONFIG.token,
            component.PROVIDER.token,
        ]
    )
    assert {r["version"] for r in cloudflare if r.get("version")} == {"6.23.1"}
    assert ours == with_sdk


@pytest.mark.parametrize(
    ("kind", "lost"),
    [("TUNNEL", "secret_inputs"), ("TUNNEL", "aliases"), ("TUNNEL_CONFIG", "aliases"), ("DNS_RECORD", "aliases"), ("PROVIDER", "secret_outputs")],
)
def test_a_kind_that_forgets_what_its_class_adds_is_caught(with_sdk: list[str], kind: str, lost: str) -> None:
    """Each fact of each kind matters: without it, the engine would get another request than the SDK's class sends."""
    assert run(**{kind: dataclasses.replace(getattr(component, kind), **{lost: ()})}) != with_sdk


def test_no_stack_imports_the_cloudflare_sdk() -> None:
    """The homelab runs its tunnel without `import pulumi_cloudflare` (1.2 s of import, every resource module)."""
    code = (
        "import sys; from stacks import read_stack_file; from iluvatar.simulate import simulate; "
        f"sim = simulate(read_stack_file({str(HOMELAB)!r})); "
        "assert [r for r in sim.registrations if r.type.startswith('cloudflare:')]; "
        "print(sorted(m for m in sys.modules if m.startswith('pulumi_cloudflare')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
