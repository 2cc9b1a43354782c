"""Remote access plan: the homelab from a phone or a laptop anywhere, over a tailnet, with no port of the LAN open.

One inventory, two control servers (`iluvatar:remoteAccess.flavour`):

- **What is advertised** (`targets`, `routes`): a subnet router advertises, as /32 routes, exactly envoy-internal's
  address (every internal app), the internal zone's resolver (the Ainur's service address, or the LAN resolver on
  Arda), both API servers' VIPs and the sign-in front door; plus the stack's own `routes` (a whole LAN, a NAS).
  The signIn kubeconfigs name the VIPs (plans.talos.cluster_endpoint, plans.k3s.server_url) and Dex's issuer is a name
  of the internal zone: over these routes they work byte for byte unchanged, signed in as at home. The operator's
  API-server proxy is not used: it serves a new name with the tailnet's certificate (tailscale.com v1.102.3
  k8s-operator/api-proxy/proxy.go:139-151), so the kubeconfigs would change, and in its `auth` mode it drops the
  caller's token and impersonates the tailnet identity instead (proxy.go:457-545), which is not the one login.
- **Names** (`split_dns`): the internal zone (and each internal app host outside it, as the router forwards them:
  plans.edge.forwarded_names) resolve through the resolver over the tunnel: the same address, page and
  certificate as at home.
- **Who reaches what** (`policy`): the tailnet's policy (HuJSON, the format Tailscale and Headscale both read), one
  group per identity group of `access`, each allowed the destinations of what it may `reach`, and the routes
  approved automatically for the router's tag.
- **tailscale**: the operator (its chart, `operator_values`) on Arda, a `Connector` (two subnet routers), the
  OAuth client's Secret; the tailnet's side (policy, split DNS) is Pulumi's through pulumi-tailscale.
- **headscale**: Headscale on the Ainur (`headscale_config`, `headscale_manifests`) with the same routes, DNS and
  policy, and its own subnet router, the tailscale image's containerboot (`router_env`), enrolled by `enroll_script`.

Plain data and text; no Pulumi here.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from plans import backup, gitops, netpol, storage, yamltext
from plans import identity as identity_plan
from plans.bringup import UPGRADER
from stacks import pins
from stacks import remote_access as rules
from stacks.apps import under
from stacks.edge import edge_addresses
from stacks.model import App, StackConfig
from stacks.remote_model import RemoteAccess, RemoteGrant

# Tailscale v1.102.3: the operator's chart (cmd/k8s-operator/deploy/chart, packaged with --version 1.102.3 by
# .github/workflows/kubemanifests.yaml:24), its images, and the subnet router's image in the headscale flavour.
TAILSCALE_VERSION = pins.APPS["tailscale"]
OPERATOR_CHART = "tailscale-operator"
OPERATOR_REPOSITORY = "https://pkgs.tailscale.com/helmcharts"
# Images are tagged v<version> (build_docker.sh:28 DEFAULT_TAGS), while the packaged chart's appVersion, its default
# tag, is the bare version: the tags are set explicitly.
IMAGE_TAG = f"v{TAILSCALE_VERSION}"
TAILSCALE_IMAGE = f"tailscale/tailscale:{IMAGE_TAG}"
OPERATOR_NAMESPACE = "tailscale"
# The Secret the chart's Deployment mounts at /oauth when no clientId is in its values (templates/deployment.yaml,
# templates/oauth-secret.yaml renders one only with oauth.clientId set): Pulumi makes it, so the secret never is a value.
OAUTH_SECRET = "operator-oauth"  # noqa: S105 - a Kubernetes object name, not a secret
# The operator's own OAuth client, which Pulumi makes (pulumi-tailscale's OauthClient; terraform-provider-tailscale
# v0.29.2 tailscale/resource_oauth_client.go): only the scopes the operator calls, tailscale.com v1.102.3
# cmd/k8s-operator/operator.go:178-260 (initTSNet: Keys().CreateAuthKey for its own device, tagged) and
# cmd/k8s-operator/tsclient.go:23-68 (its API client, used for auth keys and devices), as the operator's own e2e
# setup makes its clients (cmd/k8s-operator/e2e/setup.go:290, with `services`, which only ProxyGroups and the
# API-server proxy use, not the Connector). Never `policy_file` or `dns`: whoever reads its Secret on Arda cannot
# rewrite the tailnet's policy. Tags are mandatory with these scopes (resource_oauth_client.go:75).
OPERATOR_SCOPES = ("auth_keys", "devices:core")
OPERATOR_CLIENT_DESCRIPTION = "Iluvatar operator on Arda"
# The operator's pod annotation carrying its client's id: a new client is a new pod (the operator reads /oauth once).
OAUTH_CLIENT_ANNOTATION = "iluvatar.dev/oauth-client"
# The operator's own device joins with this tag (values operatorConfig.defaultTags); it must own the routers' tag.
OPERATOR_TAG = "tag:k8s-operator"
ROUTER_TAG = "tag:iluvatar-router"
CONNECTOR = "homelab"
ROUTER_HOSTNAME = "iluvatar-router"
# How long `up` waits for the operator to report the Connector ready (two router pods pulled, started, logged in).
CONNECTOR_WAIT_SECONDS = 600
# Two routers: one can restart (a node drain, an upgrade) while the other carries the routes (Connector replicas).
ROUTER_REPLICAS = 2

# Headscale v0.27.1 (its image is tagged with the bare version too: .goreleaser.yml kos tags).
HEADSCALE_VERSION = pins.APPS["headscale"]
HEADSCALE_IMAGE = f"ghcr.io/juanfont/headscale:{HEADSCALE_VERSION}"
NAMESPACE = "remote-access"
HEADSCALE = "headscale"
HEADSCALE_PORT = 8443
# Headscale's metrics listener, on the pod's loopback only: nothing scrapes it, and it is Headscale's debug server
# (hscontrol/debug.go debugHTTPServer: /metrics beside tsweb's /debug pages, which dump the config, the policy, the
# nodes, the routes and the pending registrations). On 0.0.0.0 every pod of the Ainur and every Pi reached it.
METRICS_PORT = 9090
METRICS_ADDRESS = f"127.0.0.1:{METRICS_PORT}"
STUN_PORT = 3478
STATE_DIR = "/var/lib/headscale"
CONFIG_DIR = "/etc/headscale"
SOCKET_DIR = "/var/run/headscale"
STATE_CLAIM = "headscale-state"
# The router's Headscale user, and where it keeps its state (containerboot's TS_KUBE_SECRET) and its enrolment key.
ROUTER_USER = rules.ROUTER_USER
ROUTER = "subnet-router"
# The router's state Secret (containerboot's TS_KUBE_SECRET) is named after the login server: router_state_secret.
ROUTER_STATE_PREFIX = "subnet-router-state"
# The router's enrolment key, written by the enrolment step on the first valar (kubectl from a pipe), never by Pulumi:
# the key is made on the Pi and goes into this Secret there, so it is in no Pulumi state, output, log or command line.
AUTHKEY_SECRET = "subnet-router-key"  # noqa: S105 - a Kubernetes object name, not a secret
# containerboot's local health endpoint (its default TS_LOCAL_ADDR_PORT, cmd/containerboot/settings.go:133, on IPv4).
ROUTER_HEALTH_PORT = 9002
# What containerboot writes into its state Secret once its node is logged in (kube/kubetypes/types.go:42 KeyDeviceID,
# cmd/containerboot/main.go:786 at v1.102.3): the node's stable id, which Headscale makes the node's id as a decimal
# (hscontrol/types/node.go:44-46 at v0.27.1). A state Secret without it has no node: the operator decides the same way
# whether a proxy needs a new key (cmd/k8s-operator/sts.go:1156-1162 deviceAuthed, v1.102.3).
DEVICE_ID_KEY = "device_id"
# The enrolment key: single-use and short-lived, as the operator mints its proxies' (sts.go:611-624: Reusable false;
# a key tagged ROUTER_TAG may advertise routes the policy approves on sight: a leaked reusable one would let anyone do
# it). It is minted by the enrolment step only when the router has no node Headscale knows, right before the step
# restarts the router and waits for it, so an hour is ample; a step killed after minting leaves a key that expires
# unused, and the next `pulumi up` mints another (the router still has no node). containerboot with TS_AUTH_ONCE
# uses it only when tailscaled says NeedsLogin (cmd/containerboot/main.go:495-560).
AUTHKEY_EXPIRATION = "1h"
# How long the enrolment waits for Headscale to answer (its pod was just made: an image pull, a first start), then
# for the router to be on the tailnet (its rollout: Ready once /healthz answers), then for its routes' approval.
ENROLL_WAIT_SECONDS = 300
# How long the API has to answer the probe of the router's state at `pulumi preview` and `pulumi up` (router_probe).
PROBE_DEADLINE = "3s"
TAILNET_RANGE = rules.TAILNET_RANGE
TAILNET_RANGE_V6 = "fd7a:115c:a1e0::/48"
MANAGED_BY = gitops.MANAGED_BY
API_PORT = 6443


def settings(stack: StackConfig) -> RemoteAccess:
    if stack.remote_access is None:
        raise ValueError("the stack has no iluvatar:remoteAccess")
    return stack.remote_access


def resolver(stack: StackConfig) -> IPv4Address:
    """The internal zone's resolver: the Ainur's service address, or the LAN resolver on Arda in a stack without them."""
    if stack.ainur is not None:
        return stack.ainur.service_ip
    return edge_addresses(stack.network.load_balancer_pool, stack.edge)["resolver"]


def targets(stack: StackConfig) -> dict[str, IPv4Address]:
    """What the subnet router advertises, by what it is: envoy-internal, the resolver, each API server, the front door."""
    out = {"envoy-internal": edge_addresses(stack.network.load_balancer_pool, stack.edge)["envoy-internal"], "resolver": resolver(stack)}
    out["arda-api"] = stack.arda.vip
    if stack.ainur is not None:
        out["ainur-api"] = stack.ainur.vip
    if stack.identity is not None:
        out["front-door"] = stack.identity.ip
    # An app's own address (its raw ports) only when a group may reach it: nothing is advertised that no rule uses.
    out.update({f"app-{a.name}": a.address for a in reached_apps(stack) if a.address is not None})
    return out


def reached_apps(stack: StackConfig) -> list[App]:
    """The apps with raw ports some group reaches (`reach: ports`, the grant's `ports`), by name."""
    remote = stack.remote_access
    names = {n for g in remote.access if "ports" in g.reach for n in g.ports} if remote is not None else set()
    return sorted((a for a in stack.apps if a.ports and a.name in names), key=lambda a: a.name)


def port_rules(stack: StackConfig, grant: RemoteGrant) -> list[dict[str, Any]]:
    """One rule per protocol for a group's raw ports: each app it names, at its address, with its ports of that
    protocol only. A rule without `proto` would pass a TCP port over UDP too (Tailscale's policy syntax, "proto";
    Headscale v0.27.1 reads the same, hscontrol/policy/v2/types.go:1525)."""
    if "ports" not in grant.reach:
        return []
    apps = sorted((a for a in stack.apps if a.ports and a.address is not None and a.name in grant.ports), key=lambda a: a.name)
    out = []
    for proto in ("tcp", "udp"):
        dst = [
            f"{a.address}:{','.join(dict.fromkeys(str(p.port) for p in a.ports if p.protocol == proto))}"
            for a in apps
            if any(p.protocol == proto for p in a.ports)
        ]
        if dst:
            out.append({"action": "accept", "src": [rules.tailnet_group(grant.group)], "proto": proto, "dst": dst})
    return out


def routes(stack: StackConfig) -> list[IPv4Network]:
    """Every route the subnet router advertises: each target as a /32, then the stack's own routes, sorted."""
    found = {IPv4Network(f"{ip}/32") for ip in targets(stack).values()} | set(settings(stack).routes)
    return sorted(found, key=lambda n: (int(n.network_address), n.prefixlen))


def destinations(stack: StackConfig, reach: str) -> list[str]:
    """The policy's destinations (`address:ports`) for one kind of reach.

    apps: envoy-internal's http (it redirects) and https, the resolver's DNS, the front door (Dex, the CA page and
    the Ainur's Argo CD, where every app's sign-in goes). kubernetes: both API servers, and what kubelogin needs to
    get a token (the resolver for Dex's name, Dex at the front door). routes: the stack's own routes, every port.
    ports: the resolver (each app's own address and ports are `port_rules`)."""
    found = targets(stack)
    dns = f"{found['resolver']}:53"
    door = [f"{found['front-door']}:80,443"] if "front-door" in found else []
    if reach == "apps":
        return [f"{found['envoy-internal']}:80,443", dns, *door]
    if reach == "kubernetes":
        apis = [f"{found[name]}:{API_PORT}" for name in ("arda-api", "ainur-api") if name in found]
        return [*apis, dns, *([f"{found['front-door']}:443"] if "front-door" in found else [])]
    if reach == "routes":
        return [f"{route}:*" for route in settings(stack).routes]
    if reach == "ports":
        # The resolver for the apps' names; the apps themselves are rules of their own, by protocol (port_rules).
        return [dns]
    raise ValueError(f"unknown reach {reach!r}")


def _merged(dst: list[str]) -> list[str]:
    """Destinations with one entry per address, its ports joined in order (`a:80,443` and `a:443` are `a:80,443`)."""
    ports: dict[str, list[str]] = {}
    for d in dst:
        address, _, given = d.rpartition(":")
        have = ports.setdefault(address, [])
        have += [p for p in given.split(",") if p not in have]
    return [f"{address}:{'*' if '*' in p else ','.join(p)}" for address, p in ports.items()]


def policy(stack: StackConfig) -> dict[str, Any]:
    """The tailnet's policy: its groups (the identity groups of `access`, with their members), who owns the router's tag,
    the routes approved for it, and one rule per group allowing what it may reach and nothing else (the tailnet
    denies all that no rule allows)."""
    remote = settings(stack)
    groups = {rules.tailnet_group(g.group): list(g.members) for g in remote.access}
    acls = [
        rule
        for grant in remote.access
        for rule in (
            {
                "action": "accept",
                "src": [rules.tailnet_group(grant.group)],
                "dst": _merged([d for reach in grant.reach for d in destinations(stack, reach)]),
            },
            *port_rules(stack, grant),
        )
    ]
    # The operator's devices own the routers' tag (the operator tags what it makes); Headscale's router gets its tag
    # from its enrolment key, which needs no owner (a forced tag).
    owners = {OPERATOR_TAG: [], ROUTER_TAG: [OPERATOR_TAG]} if remote.flavour == "tailscale" else {ROUTER_TAG: []}
    return {
        "groups": groups,
        "tagOwners": owners,
        "autoApprovers": {"routes": {str(route): [ROUTER_TAG] for route in routes(stack)}},
        "acls": acls,
    }


def policy_text(stack: StackConfig) -> str:
    """The policy as its file holds it: HuJSON (JSON is HuJSON) with a comment that says where it comes from."""
    return "// The tailnet's policy, written by Iluvatar from iluvatar:remoteAccess; change the stack, not this file.\n" + json.dumps(
        policy(stack), indent=2, sort_keys=False
    )


def split_names(stack: StackConfig) -> list[str]:
    """The names the tailnet's devices resolve through the homelab's resolver: the internal zone, and each internal
    app's host outside it (the home router forwards those too, plans.edge.forwarded_names). Never an external app's:
    its LAN answer is envoy-external's address, which is not advertised, so its public answer must stay."""
    domain = stack.network.domain
    return [domain, *sorted(a.host for a in stack.apps if a.audience == "internal" and not under(a.host, domain))]


def split_dns(stack: StackConfig) -> dict[str, list[str]]:
    """Each split name and the resolver it goes to, over the tunnel."""
    return {name: [str(resolver(stack))] for name in split_names(stack)}


# --- tailscale: the operator on Arda ------------------------------------------------------------------------------


def operator_values(stack: StackConfig, client_id: str) -> dict[str, Any]:
    """The operator's chart values: the pinned images, its tag, no API-server proxy (module doc), no OAuth values (the
    Secret is Pulumi's, `oauth_secret`). `client_id` (its OAuth client's id, no secret) is a pod annotation: the
    operator reads its credentials once at start (tsclient.go:39-53, os.ReadFile into a static tailscale.OAuth) and the
    chart has no checksum of the Secret (templates/deployment.yaml:19-24 has only operatorConfig.podAnnotations), so a
    new client must roll the pod."""
    return {
        "installCRDs": True,
        "operatorConfig": {
            "defaultTags": [OPERATOR_TAG],
            "podAnnotations": {OAUTH_CLIENT_ANNOTATION: client_id},
            "hostname": f"{stack.arda.cluster_name}-tailscale-operator",
            "image": {"tag": IMAGE_TAG, "pullPolicy": "IfNotPresent"},
            "logging": "info",
        },
        "proxyConfig": {"image": {"tag": IMAGE_TAG}, "defaultTags": ROUTER_TAG},
        "apiServerProxyConfig": {"mode": "false"},
        "ingressClass": {"enabled": False},
    }


def operator_namespace() -> dict[str, Any]:
    """The operator's namespace; its proxies (the subnet routers) need NET_ADMIN and a tun device: privileged."""
    return gitops.category_namespace(OPERATOR_NAMESPACE, "privileged")


def oauth_secret(client_id: str, client_secret: str) -> dict[str, Any]:
    """The OAuth client as the operator reads it (CLIENT_ID_FILE /oauth/client_id, CLIENT_SECRET_FILE /oauth/client_secret)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": OAUTH_SECRET, "namespace": OPERATOR_NAMESPACE, "labels": dict(MANAGED_BY)},
        "type": "Opaque",
        "stringData": {"client_id": client_id, "client_secret": client_secret},
    }


def connector(stack: StackConfig) -> dict[str, Any]:
    """The Connector: the operator runs it as subnet routers (a StatefulSet of the proxy image) advertising `routes`."""
    return {
        "apiVersion": "tailscale.com/v1alpha1",
        "kind": "Connector",
        # Pulumi waits until the operator says the routers run (its ConnectorReady condition, types_connector.go:251 at
        # v1.102.3; pulumi-kubernetes' waitFor annotation, 4.18 and later): an OAuth client missing a scope or a tag's
        # owner shows in that status, and fails the `up` instead of passing it.
        "metadata": {
            "name": CONNECTOR,
            "labels": dict(MANAGED_BY),
            "annotations": {"pulumi.com/waitFor": "condition=ConnectorReady", "pulumi.com/timeoutSeconds": str(CONNECTOR_WAIT_SECONDS)},
        },
        "spec": {
            "hostnamePrefix": ROUTER_HOSTNAME,
            "replicas": ROUTER_REPLICAS,
            "tags": [ROUTER_TAG],
            "subnetRouter": {"advertiseRoutes": [str(r) for r in routes(stack)]},
        },
    }


# --- headscale: the control server and its router on the Ainur --------------------------------------------------


def headscale_url(stack: StackConfig) -> str:
    remote = settings(stack)
    assert remote.headscale is not None
    return remote.headscale.url.rstrip("/")


def headscale_host(stack: StackConfig) -> str:
    return headscale_url(stack).removeprefix("https://").split(":", 1)[0]


def headscale_config(stack: StackConfig) -> dict[str, Any]:
    """Headscale's config.yaml (keys as hscontrol/types/config.go reads them at v0.27.1).

    TLS is Headscale's own Let's Encrypt client by TLS-ALPN-01 on the one port phones reach (app.go:884-889), so
    only TCP 443 is forwarded; the devices keep their own resolver for everything but the split names
    (override_local_dns false; with it true Headscale needs global nameservers, config.go:434-436); updates are
    never checked from the pod (root.go's check asks GitHub)."""
    remote = settings(stack)
    assert remote.headscale is not None
    embedded = remote.headscale.derp == "embedded"
    derp: dict[str, Any] = {
        "server": {
            "enabled": embedded,
            "region_id": 999,
            "region_code": "iluvatar",
            "region_name": "Iluvatar (Headscale's own DERP)",
            "stun_listen_addr": f"0.0.0.0:{STUN_PORT}",
            "private_key_path": f"{STATE_DIR}/derp_server_private.key",
            "automatically_add_embedded_derp_region": True,
        },
        # Tailscale's public relays, unless the stack says embedded: then Headscale's own, and no other.
        "urls": [] if embedded else ["https://controlplane.tailscale.com/derpmap/default"],
        "paths": [],
        "auto_update_enabled": not embedded,
        "update_frequency": "24h",
    }
    return {
        "server_url": headscale_url(stack),
        "listen_addr": f"0.0.0.0:{HEADSCALE_PORT}",
        "metrics_listen_addr": METRICS_ADDRESS,
        "grpc_listen_addr": "127.0.0.1:50443",
        "grpc_allow_insecure": False,
        "noise": {"private_key_path": f"{STATE_DIR}/noise_private.key"},
        "prefixes": {"v4": str(TAILNET_RANGE), "v6": TAILNET_RANGE_V6, "allocation": "sequential"},
        "derp": derp,
        "disable_check_updates": True,
        "ephemeral_node_inactivity_timeout": "30m",
        "database": {"type": "sqlite", "sqlite": {"path": f"{STATE_DIR}/db.sqlite", "write_ahead_log": True}},
        "acme_url": "https://acme-v02.api.letsencrypt.org/directory",
        "acme_email": stack.edge.acme_email or "",
        "tls_letsencrypt_hostname": headscale_host(stack),
        "tls_letsencrypt_cache_dir": f"{STATE_DIR}/cache",
        "tls_letsencrypt_challenge_type": "TLS-ALPN-01",
        "tls_cert_path": "",
        "tls_key_path": "",
        "log": {"level": "info", "format": "text"},
        "policy": {"mode": "file", "path": f"{CONFIG_DIR}/policy.hujson"},
        "dns": {
            "magic_dns": True,
            "base_domain": rules.base_domain(settings(stack), stack.network),
            "override_local_dns": False,
            "nameservers": {"global": [], "split": split_dns(stack)},
            "search_domains": [],
            "extra_records": [],
        },
        "unix_socket": f"{SOCKET_DIR}/headscale.sock",
        "unix_socket_permission": "0770",
        "logtail": {"enabled": False},
        "randomize_client_port": False,
    }


def _meta(name: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": {**MANAGED_BY, **labels}}


def headscale_manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """Headscale on the Ainur: its config and policy, its state (a claim, `protect`ed by the component), one pod
    (Recreate: one writer of its database), and the LoadBalancer at headscale.ip the port forward reaches."""
    remote = settings(stack)
    assert remote.headscale is not None
    labels = {"app.kubernetes.io/name": HEADSCALE}
    config = yamltext.dump(headscale_config(stack))
    policy = policy_text(stack)
    state_class = storage.git_mirror_class(stack)
    ports = [{"name": "https", "containerPort": HEADSCALE_PORT, "protocol": "TCP"}]
    service_ports = [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    if remote.headscale.derp == "embedded":
        ports.append({"name": "stun", "containerPort": STUN_PORT, "protocol": "UDP"})
        service_ports.append({"name": "stun", "port": STUN_PORT, "targetPort": "stun", "protocol": "UDP"})
    pod: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": HEADSCALE,
                "image": HEADSCALE_IMAGE,
                "args": ["serve", "--config", f"{CONFIG_DIR}/config.yaml"],
                "ports": ports,
                # Ready once its own CLI's health check answers: the CLI over the unix socket, the server's Health call,
                # which pings its database (cmd/headscale/cli/health.go:13-22, hscontrol/grpcv1.go:779 at v0.27.1), as
                # Headscale's container docs check it (docs/setup/install/container.md). A TCP connect passed before it
                # could answer anything.
                "readinessProbe": {"exec": {"command": ["headscale", "health"]}, "periodSeconds": 10, "timeoutSeconds": 5},
                "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "state", "mountPath": STATE_DIR},
                    {"name": "socket", "mountPath": SOCKET_DIR},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": HEADSCALE}},
            {"name": "state", "persistentVolumeClaim": {"claimName": STATE_CLAIM}},
            {"name": "socket", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if state_backup_enabled(stack):
        # Its state backed up (or a new claim filled from the backup) before Headscale opens it (state_backup_container).
        pod["initContainers"] = [state_backup_container(stack)]
        if backup.target(stack).kind == "nfs":
            pod["volumes"].append({"name": "target", "nfs": {"server": backup.nfs_server(stack), "path": backup.target(stack).path}})
    return [
        gitops.category_namespace(NAMESPACE, "privileged"),
        # Every pod of the namespace admits nothing a policy does not allow: Headscale its devices' ports
        # (headscale_network_policy); the subnet router nothing (its health listener only the kubelet reaches, from the
        # pod's own node; its WireGuard packets are replies to its own, which the controller's conntrack rule admits).
        netpol.default_deny(NAMESPACE),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(HEADSCALE, **labels), "data": {"config.yaml": config, "policy.hujson": policy}},
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(STATE_CLAIM, **labels),
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": state_class, "resources": {"requests": {"storage": "1Gi"}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(HEADSCALE, **labels),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                # A new config or policy is a new pod: their digest in the template.
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {"iluvatar.dev/config-digest": gitops.values_digest({"config": config, "policy": policy})},
                    },
                    "spec": pod,
                },
            },
        },
        headscale_network_policy(stack),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**_meta(HEADSCALE, **labels), "annotations": {"kube-vip.io/loadbalancerIPs": str(remote.headscale.ip)}},
            # Local: the clients' own addresses reach Headscale, not kube-proxy's masquerade of them. Its STUN (with derp:
            # embedded, the tailnet's only one) answers each device with the address it sees, which must be the device's
            # public one for two devices to meet directly; kube-vip announces the address from Headscale's node, as for
            # netboot (plans/netboot/objects.py).
            # No NodePort: kube-vip's address is the door (plans.netpol).
            "spec": netpol.load_balancer(service_ports, externalTrafficPolicy="Local", selector=labels),
        },
        *state_backup_manifests(stack),
    ]


def headscale_network_policy(stack: StackConfig) -> dict[str, Any]:
    """Headscale's pod admits only what the devices use, from anywhere (the port forward brings the internet's devices,
    and its Service keeps their addresses): its HTTPS port, and STUN with derp: embedded. Nothing else the pod might
    listen on (a metrics or gRPC listener moved off loopback by a later config) is reachable. k3s enforces it with its
    embedded network policy controller (kube-router's, on unless --disable-network-policy)."""
    remote = settings(stack)
    assert remote.headscale is not None
    ports = [{"port": HEADSCALE_PORT, "protocol": "TCP"}]
    if remote.headscale.derp == "embedded":
        ports.append({"port": STUN_PORT, "protocol": "UDP"})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(HEADSCALE, **{"app.kubernetes.io/name": HEADSCALE}),
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": HEADSCALE}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": ports}],
        },
    }


def headscale_user(member: str) -> str:
    """The Headscale user a policy member names: the login without the trailing @ (`bob@` is bob; an e-mail is itself),
    as Headscale resolves it (hscontrol/policy/v2/types.go:160-196, resolveUser)."""
    return member.removesuffix("@")


def members(stack: StackConfig) -> list[str]:
    """Every Headscale user the policy names, once, in order."""
    out: list[str] = []
    for grant in settings(stack).access:
        out += [headscale_user(m) for m in grant.members if headscale_user(m) not in out]
    return out


def _cli_ready(headscale: str, wait_seconds: int) -> list[str]:
    """The scripts' start: a function for Headscale's CLI, then a wait, at most `wait_seconds`, until the server
    answers it (`headscale health`)."""
    return [
        "set -eu",
        f'hs() {{ {headscale} "$@"; }}',
        f"deadline=$(( $(date +%s) + {wait_seconds} ))",
        "until hs health >/dev/null 2>&1; do",
        '  if [ "$(date +%s)" -ge "$deadline" ]; then',
        f'    echo "iluvatar: Headscale did not answer its CLI within {wait_seconds} s; look with: {headscale} health" >&2',
        "    exit 1",
        "  fi",
        "  sleep 2",
        "done",
    ]


def _make_users(users: list[str]) -> list[str]:
    """Each user made once: a second run finds them."""
    return [
        f"for user in {' '.join(shlex.quote(u) for u in users)}; do",
        '  hs users list --name "$user" --output json | grep -q \'"name"\' || hs users create "$user" >/dev/null',
        "done",
    ]


def users_script(stack: StackConfig, headscale: str, wait_seconds: int = ENROLL_WAIT_SECONDS) -> str:
    """What makes the Headscale users the policy names (a step of its own: a change of members runs it again, and only
    it, never minting a router key), with `headscale` as in `enroll_script`. Prints nothing on stdout."""
    return "\n".join([*_cli_ready(headscale, wait_seconds), *_make_users(members(stack)), ""])


def _mint() -> list[str]:
    """A shell function `mint` that prints one new router key (and nothing else) on stdout: the router's user made once,
    the key single-use, expiring in AUTHKEY_EXPIRATION and tagged ROUTER_TAG, so the policy's autoApprovers approve
    the router's routes. Headscale's answer is captured, then checked: a pipeline's status is its last command's (no
    pipefail in POSIX sh, and the remote shell may be dash), so a failing CLI would print nothing and exit 0."""
    q = shlex.quote
    return [
        "mint() {",
        *(f"  {line}" for line in _make_users([ROUTER_USER])),
        # The router's user by its id (preauthkeys take --user ID since 0.26): the first "id" in the listing.
        f"  id=$(hs users list --name {q(ROUTER_USER)} --output json | tr -d ' \\n' | sed -n 's/.*\"id\":\\([0-9]*\\).*/\\1/p')",
        '  [ -n "$id" ] || { echo "iluvatar: Headscale has no user ' + ROUTER_USER + ' after making it" >&2; return 1; }',
        f'  out=$(hs preauthkeys create --user "$id" --expiration {AUTHKEY_EXPIRATION} --tags {ROUTER_TAG} --output json) || {{',
        '    echo "iluvatar: Headscale did not make the router\'s key; the step runs again on the next pulumi up" >&2; return 1; }',
        '  key=$(printf %s "$out" | tr -d \' \\n\' | sed -n \'s/.*"key":"\\([^"]*\\)".*/\\1/p\')',
        '  case "$key" in',
        # Its keys are 48 hex digits (hscontrol/db/preauth_keys.go:163-171, generateKey, at v0.27.1).
        "    ''|*[!A-Za-z0-9_-]*)",
        '      echo "iluvatar: Headscale answered preauthkeys create without a key; its output had no \\"key\\" of letters and digits" >&2',
        "      return 1;;",
        "  esac",
        "  printf '%s\\n' \"$key\"",
        "}",
    ]


def enroll_script(headscale: str, wait_seconds: int = ENROLL_WAIT_SECONDS) -> str:
    """One router key from Headscale's CLI (`headscale` as in `users_script`), printed alone on stdout: what
    `router_script` mints when the router has no node, and what docs/remote-access.md's manual enrolment runs."""
    return "\n".join([*_cli_ready(headscale, wait_seconds), *_mint(), "mint", ""])


def _node_lines(state_secret: str) -> list[str]:
    """Shell functions, called in the step's shell (not in `$(...)`, so what they read stays in its variables and never
    in a file: Headscale's listing holds each node's pre-auth key, hscontrol/types/node.go:407-408 at v0.27.1):
    `find_node` sets `nodes` (Headscale's nodes, one a line) and `node` (the router's node id when its state Secret
    names one (DEVICE_ID_KEY) that Headscale still has, else empty); `routes_of FIELD` prints that list of the node's
    routes, one a line, sorted.

    `headscale nodes list --output json` is its nodes' protobuf structs through encoding/json, indented (cmd/headscale/
    cli/utils.go:138 SuccessOutput; gen/go/headscale/v1/node.pb.go:79-98 at v0.27.1: `id` first, then
    `approved_routes`, `available_routes` (what the node advertises), `subnet_routes`, omitted when empty)."""
    return [
        "find_node() {",
        "  node= nodes=",
        # Each answer captured, then read: a failing kubectl or CLI inside a pipeline would look like "no node" and mint.
        f"  raw=$(kc get secret {state_secret} --ignore-not-found -o 'jsonpath={{.data.{DEVICE_ID_KEY}}}') || {{",
        f'    echo "iluvatar: cannot read Secret {NAMESPACE}/{state_secret}; nothing was minted" >&2; return 1; }}',
        '  dev=$(printf %s "$raw" | base64 -d)',
        # One node a line: each starts with its id (the only `},{"id":` joins two nodes; a node's user is `"user":{"id"`).
        '  raw=$(hs nodes list --output json) || { echo "iluvatar: Headscale did not list its nodes; nothing was minted" >&2; return 1; }',
        '  nodes=$(printf %s "$raw" | tr -d \' \\n\\t\' | sed \'s/},{"id":/}\\n{"id":/g\')',
        "  raw=",
        '  case "$dev" in',
        "    ''|*[!0-9]*) return 0;;",
        "  esac",
        '  if printf \'%s\\n\' "$nodes" | grep -q "^\\[\\{0,1\\}{\\"id\\":$dev,"; then node=$dev; fi',
        "}",
        "routes_of() {",
        '  printf \'%s\\n\' "$nodes" | grep "^\\[\\{0,1\\}{\\"id\\":$node," | sed -n "s/.*\\"$1\\":\\[\\([^]]*\\)\\].*/\\1/p" | tr \',\' \'\\n\' | tr -d \'"\' | sed \'/^$/d\' | sort',
        "}",
        # The router's earlier nodes: offline nodes of the router's user (Headscale filters by user itself,
        # hscontrol/grpcv1.go:469-477 at v0.27.1) that are routers: its hostname ROUTER_HOSTNAME (the node's `name`,
        # types/node.go:390, followed by its `user`, node.pb.go:84-85) and the tag its key gave it (`forced_tags`, copied
        # from the pre-auth key when the node is made, hscontrol/state/state.go:1067). A device someone enrolled with the
        # router's user has neither, and stays. Other than its node; offline (`online` is omitted when false,
        # node.pb.go:95). Each state Secret lost left one, with its routes approved. The listing stays in this function's
        # subshell; one that fails removes nothing (this is clean-up, the router is already up) and says so.
        "stale_nodes() {",
        f"  raw=$(hs nodes list --user {ROUTER_USER} --output json) || {{",
        f'    echo "iluvatar: Headscale did not list the nodes of user {ROUTER_USER}; the subnet router\'s earlier nodes were not removed" >&2; return 0; }}',
        '  printf %s "$raw" | tr -d \' \\n\\t\' | sed \'s/},{"id":/}\\n{"id":/g\' \\',
        f'    | grep -F \'"name":"{ROUTER_HOSTNAME}","user":{{\' | grep -F \'"forced_tags":["{ROUTER_TAG}"]\' | grep -vF \'"online":true\' \\',
        '    | sed -n \'s/^\\[\\{0,1\\}{"id":\\([0-9]*\\),.*/\\1/p\' | grep -vx "$node" || true',
        "}",
        # Headscale names a node only when it makes it (EnsureUniqueGivenName, hscontrol/state/state.go:1082-1087): a
        # router enrolled while its earlier node held ROUTER_HOSTNAME is ROUTER_HOSTNAME-<random>. Once that node is gone,
        # the router takes its name back (`nodes rename`, cmd/headscale/cli/nodes.go:62-63, 343-385; refused only when
        # another node holds the name, state.go:682-688). Cosmetic: a refusal is said, and fails nothing.
        "name_node() {",
        f'  printf \'%s\\n\' "$nodes" | grep "^\\[\\{{0,1\\}}{{\\"id\\":$node," | grep -q \'"given_name":"{ROUTER_HOSTNAME}"[,}}]\' && return 0',
        f'  err=$(hs nodes rename --identifier "$node" {ROUTER_HOSTNAME} 2>&1) || echo "iluvatar: the subnet router\'s node $node keeps its name: $err" >&2',
        "  return 0",
        "}",
    ]


def router_state_secret(stack: StackConfig) -> str:
    """The router's state Secret (containerboot's TS_KUBE_SECRET), named after the login server: a new `headscale.url`
    starts the router with no state, so the step enrols it with the new server. Kept, the old state would strand it:
    with TS_AUTH_ONCE a router with its node runs `tailscale set`, which passes no `--login-server`
    (cmd/containerboot/tailscaled.go:169-185 at v1.102.3; only `tailscale up`, :113-147, appends TS_EXTRA_ARGS), so
    tailscaled keeps the old control URL, which the router can no longer reach."""
    return f"{ROUTER_STATE_PREFIX}-{hashlib.sha256(headscale_url(stack).encode()).hexdigest()[:8]}"


def router_template_digest(stack: StackConfig) -> str:
    """A digest of the router's pod template, which is all a change of the Deployment rolls on (its image, the
    environment with the login server and routes, hostAliases with Headscale's address, resources). The step's script
    carries it, so any change that rolls the router runs the step again, and its waits see the new pod: the Deployment
    itself is not awaited by Pulumi (skipAwait)."""
    deployment = next(m for m in router_manifests(stack) if m["kind"] == "Deployment")
    text = json.dumps(deployment["spec"]["template"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def router_probe_command(stack: StackConfig) -> str:
    """At `pulumi preview` and `pulumi up` (kubeconfig on stdin): whether the router's state Secret still names its node
    and whether its Deployment is available (`{"secret": "present"|"absent"|"unreachable", "deployment":
    "available"|"unavailable"|"unreachable"}`, upgrader secret-key; never fails, at most PROBE_DEADLINE)."""
    secret = ["--namespace", NAMESPACE, "--secret", router_state_secret(stack), "--key", DEVICE_ID_KEY]
    return shlex.join([*UPGRADER, "secret-key", *secret, "--deployment", ROUTER, "--deadline", PROBE_DEADLINE])


def router_enrolment(previous: int, probed: str) -> int:
    """The router's enrolment count: the last deployment's (`previous`), one more when the probe found the router's
    state Secret without its node (deleted, never written, a new login server), or its Deployment not available (no
    Ready pod, or a rollout not finished: a router that *starts* without its node, forgotten or expired by Headscale,
    keeps `device_id` in the Secret, since containerboot keeps it on every start, cmd/containerboot/kube.go:128-162 at
    v1.102.3, but its pod never gets Ready. One whose node Headscale forgets while it runs stays Ready, and is not
    seen here until it restarts: tailscaled stays Running on control's 404, ipn/ipnlocal/local.go:1821-1831, and
    /healthz keeps its last netmap's addresses, cmd/containerboot/main.go:900-901): the router step's script carries the count, so the step runs again, mints a key when Headscale has no
    node for it, and otherwise fails naming the router's logs. The same count when the router has its node and is
    Ready, or the probe could not look (a cluster down at preview changes nothing)."""
    try:
        found = json.loads(probed) if probed.strip() else {}
    except ValueError:
        found = {}
    if not isinstance(found, dict):
        found = {}
    return previous + 1 if found.get("secret") == "absent" or found.get("deployment") == "unavailable" else previous


def router_script(stack: StackConfig, headscale: str, kubectl: str, enrolment: int = 1, wait_seconds: int = ENROLL_WAIT_SECONDS) -> str:
    """The router's enrolment and its check, run on the first valar after Pulumi applied the router's Deployment:
    `headscale` reaches the server's CLI (as in `users_script`), `kubectl` the Ainur's API (`sudo k3s kubectl`).

    1. When the router has no node Headscale knows (its state Secret lost or never written, its node deleted), a key
       is minted (`_mint`), written into AUTHKEY_SECRET by kubectl from a pipe (never an argument, never printed), and
       the router restarted to read it. Whatever stopped an earlier run (a key that expired unused, a state Secret
       deleted, a step killed), this run starts from what is there now, as the operator does for its proxies
       (cmd/k8s-operator/sts.go:403-428: a new key whenever the proxy's Secret is missing).
    2. It waits, at most `wait_seconds`, for the router's rollout (Ready once containerboot's /healthz says it has a
       tailnet address).
    3. It waits, at most `wait_seconds`, until the routes the router advertises are the stack's (`routes`) and Headscale
       approved each: a route left unapproved (a policy whose autoApprovers miss it, Headscale v0.27.1 approving only
       on a change of routes, hscontrol/state/state.go:1656) fails the step, naming it and the command that approves it.

    `enrolment` (router_enrolment) is in its first line: a new count runs the step again.
    Prints one line on stdout: the router's node and its routes (no secret)."""
    want = " ".join(str(r) for r in routes(stack))
    q = shlex.quote
    deploy = f"deploy/{ROUTER}"
    state = router_state_secret(stack)
    return "\n".join(
        [
            f"# The subnet router's enrolment {enrolment} (one more each time a preview found it without its node or not Ready);",
            f"# its pod template {router_template_digest(stack)} (any change that rolls the router runs this step, its wait).",
            *_cli_ready(headscale, wait_seconds),
            f'kc() {{ {kubectl} -n {NAMESPACE} "$@"; }}',
            *_mint(),
            *_node_lines(state),
            "find_node",
            'if [ -z "$node" ]; then',
            f'  echo "iluvatar: the subnet router has no node Headscale knows (no {DEVICE_ID_KEY} in Secret {NAMESPACE}/{state}, or Headscale has not that node): minting it a key" >&2',
            "  key=$(mint)",
            f'  printf %s "$key" | kc create secret generic {AUTHKEY_SECRET} --from-file=TS_AUTHKEY=/dev/stdin --dry-run=client -o yaml \\',
            "    | kc apply --server-side --force-conflicts --field-manager=iluvatar-enrolment -f - >/dev/null",
            "  key=",
            # Its PodSecurity warnings (the namespace warns at restricted, the router is privileged) only on a failure.
            f"  err=$(kc rollout restart {deploy} 2>&1 >/dev/null) || {{ printf '%s\\n' \"$err\" >&2; exit 1; }}",
            "fi",
            f"if ! kc rollout status {deploy} --timeout={wait_seconds}s >/dev/null; then",
            f'  echo "iluvatar: the subnet router was not on the tailnet within {wait_seconds} s; look with: sudo k3s kubectl -n {NAMESPACE} logs {deploy}" >&2',
            "  exit 1",
            "fi",
            f"want={q(want)}",
            f"deadline=$(( $(date +%s) + {wait_seconds} ))",
            "while :; do",
            "  find_node",
            "  unadvertised= unapproved= extra=",
            '  if [ -n "$node" ]; then',
            "    advertised=$(routes_of available_routes); approved=$(routes_of approved_routes)",
            '    for r in $want; do printf %s "$advertised" | grep -qxF "$r" || unadvertised="$unadvertised $r"; done',
            "    for r in $advertised; do",
            '      printf %s "$approved" | grep -qxF "$r" || unapproved="$unapproved $r"',
            '      case " $want " in *" $r "*) ;; *) extra="$extra $r";; esac',
            "    done",
            '    if [ -z "$unadvertised$unapproved$extra" ]; then',
            # Once the new node is on the tailnet with its routes: the router's earlier nodes and state Secrets go.
            "      for old in $(stale_nodes); do",
            '        echo "iluvatar: deleting the subnet router\'s earlier node $old (offline; its state was lost or its login server changed)" >&2',
            '        hs nodes delete --identifier "$old" --force >/dev/null',
            "      done",
            "      name_node",
            f"      for old in $(kc get secrets -o name | sed -n 's|^secret/\\({ROUTER_STATE_PREFIX}\\(-[0-9a-f]*\\)\\{{0,1\\}}\\)$|\\1|p' | grep -vx {state} || true); do",
            '        echo "iluvatar: deleting the subnet router\'s earlier state Secret $old" >&2',
            '        kc delete secret "$old" >/dev/null',
            "      done",
            '      echo "subnet router: node $node, its routes advertised and approved:" $want',
            "      exit 0",
            "    fi",
            "  fi",
            '  if [ "$(date +%s)" -ge "$deadline" ]; then',
            f'    [ -n "$node" ] || echo "iluvatar: the subnet router is Ready but names no node Headscale has (Secret {NAMESPACE}/{state})" >&2',
            '    [ -z "$unadvertised" ] || echo "iluvatar: the subnet router (node $node) does not advertise:$unadvertised" >&2',
            '    [ -z "$extra" ] || echo "iluvatar: the subnet router (node $node) advertises routes the stack does not:$extra" >&2',
            '    [ -z "$unapproved" ] || echo "iluvatar: Headscale has not approved the route(s)$unapproved the subnet router (node $node) advertises;'
            f" the policy's autoApprovers give them to {ROUTER_TAG}; approve them with: {headscale} nodes approve-routes --identifier $node --routes <every route, comma-separated>\" >&2",
            "    exit 1",
            "  fi",
            "  sleep 2",
            "done",
            "",
        ]
    )


def router_env(stack: StackConfig) -> list[dict[str, Any]]:
    """containerboot's environment for the headscale flavour's subnet router (cmd/containerboot/settings.go:96-140 at
    v1.102.3): state in its own Secret, the kernel's tun (not userspace: a subnet router forwards for others), the
    routes, the enrolment key from its Secret, used once (TS_AUTH_ONCE: later starts run `tailscale set` with the
    routes, tailscaled.go:166-190), and Headscale's URL. Ordered as the container lists it."""
    return [
        {"name": "TS_KUBE_SECRET", "value": router_state_secret(stack)},
        {"name": "TS_USERSPACE", "value": "false"},
        {"name": "TS_AUTH_ONCE", "value": "true"},
        {"name": "TS_ROUTES", "value": ",".join(str(r) for r in routes(stack))},
        {"name": "TS_HOSTNAME", "value": ROUTER_HOSTNAME},
        {"name": "TS_EXTRA_ARGS", "value": f"--login-server={headscale_url(stack)}"},
        # Optional: a router with its node needs no key (TS_AUTH_ONCE), and must start without the Secret (one enrolled
        # before the step wrote it, or the Secret deleted); one without its node gets it from the step, which restarts it.
        {"name": "TS_AUTHKEY", "valueFrom": {"secretKeyRef": {"name": AUTHKEY_SECRET, "key": "TS_AUTHKEY", "optional": True}}},
        # /healthz on ROUTER_HEALTH_PORT: 200 once the node has a tailnet address, 503 before (cmd/containerboot/main.go:77-80).
        {"name": "TS_ENABLE_HEALTH_CHECK", "value": "true"},
        {"name": "TS_LOCAL_ADDR_PORT", "value": f"0.0.0.0:{ROUTER_HEALTH_PORT}"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]


def router_manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """The headscale flavour's subnet router on the Ainur, as Tailscale's own Kubernetes example runs one
    (docs/k8s/subnet.yaml, role.yaml at v1.102.3): its account, may touch only its state Secret, a privileged
    container (it sets up the tun, routes and netfilter and turns forwarding on). Headscale's public name is
    Headscale's LoadBalancer address inside the pod (hostAliases): the router reaches it on the LAN, with the same
    certificate, whatever the home router does with its own public address."""
    remote = settings(stack)
    assert remote.headscale is not None
    labels = {"app.kubernetes.io/name": ROUTER}
    pod = {
        "serviceAccountName": ROUTER,
        "hostAliases": [{"ip": str(remote.headscale.ip), "hostnames": [headscale_host(stack)]}],
        "containers": [
            {
                "name": "tailscale",
                "image": TAILSCALE_IMAGE,
                "env": router_env(stack),
                "ports": [{"name": "health", "containerPort": ROUTER_HEALTH_PORT, "protocol": "TCP"}],
                # Ready once it is on the tailnet (logged in, an address): a router that never logs in is never Ready. Pulumi
                # does not await the Deployment (skipAwait below): the router's step does, `rollout status` on this probe,
                # and runs whenever the pod template changes (router_template_digest) or the probe at preview finds the
                # router not available (router_enrolment).
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 5, "failureThreshold": 3},
                "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "securityContext": {"privileged": True},
            }
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ROUTER, **labels)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(ROUTER, **labels),
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [router_state_secret(stack)], "verbs": ["get", "update", "patch"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "create", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(ROUTER, **labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROUTER},
            "subjects": [{"kind": "ServiceAccount", "name": ROUTER, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            # Pulumi does not await it: its first pod waits for a key that only the step after it mints (`router_script`),
            # which is its wait, with a bound and a message, and sees the router on the tailnet with its routes approved.
            "metadata": {**_meta(ROUTER, **labels), "annotations": {"pulumi.com/skipAwait": "true"}},
            # One router: its state Secret is one node's identity; two pods would share it.
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
    ]


def sign_in(stack: StackConfig) -> dict[str, Any]:
    """What the stack output `remoteAccess` says: the flavour, where phones sign in, what is advertised, the split names."""
    remote = settings(stack)
    out: dict[str, Any] = {
        "flavour": remote.flavour,
        "loginServer": headscale_url(stack) if remote.flavour == "headscale" else "https://controlplane.tailscale.com",
        "routes": [str(r) for r in routes(stack)],
        "splitDns": split_dns(stack),
        "groups": {rules.tailnet_group(g.group): list(g.reach) for g in remote.access},
    }
    if stack.identity is not None:
        out["issuer"] = identity_plan.issuer(stack)
    return out


# --- Headscale's state, backed up ----------------------------------------------------------------------------------

# Headscale's state (its database: the devices, their keys and addresses, the users, the pre-auth keys; its Noise and
# DERP private keys; its ACME account) is one claim on the Ainur, where VolSync does not run. It goes to the stack's
# backup target as every app volume does, a restic repository of its own (restic, the image the drills pin), and comes
# back the way VolSync brings a volume back on a rebuilt cluster: into a new, empty claim before Headscale starts.
#
# A consistent copy, without sqlite3 (no image the project pins has it, and Headscale's distroless image has only its
# own binary): the copy is taken while no Headscale runs. It is an init container of Headscale's own pod, so it runs
# before Headscale opens its database, and the Deployment is Recreate with one replica, whose controller starts a new
# pod only once every old pod is gone (k8s.io/kubernetes v1.35.1 pkg/controller/deployment/recreate.go:49-61,
# oldPodsRunning at :99). A Headscale stopped by SIGTERM closes its database (hscontrol/app.go:840-844 at v0.27.1),
# which in WAL mode runs VACUUM and lets SQLite checkpoint the WAL into db.sqlite as the last connection closes
# (hscontrol/db/db.go:1292-1294); one that was killed leaves db.sqlite with its -wal beside it, which is a crash's state
# and which SQLite recovers as it opens them: the whole folder is copied, as it lies, with nothing writing it. A copy
# of the live files (restic beside a running Headscale) could read db.sqlite mid-checkpoint and the WAL after it.
# Headscale's upgrade guide asks for a backup of the database before each upgrade (docs/setup/upgrade.md:7 at
# v0.27.1): a new image is a new pod, so that backup is taken too.
#
# The schedule is a restart: a CronJob stamps the pod template (STATE_BACKUP_ANNOTATION), which the Deployment rolls as
# any template change. A gap of Headscale's control plane of seconds (its stop, the backup, its start): the devices
# keep their tunnels, and only a login or a new device waits. Killed at any point it leaves nothing half-done: the
# stamp is one PATCH, and the roll is the Deployment controller's.
STATE_BACKUP = "state-backup"
STATE_BACKUP_SCHEDULE = "17 4 * * *"  # daily, at an hour the household sleeps
STATE_BACKUP_ANNOTATION = "iluvatar.dev/state-backup-at"
STATE_BACKUP_HOST = HEADSCALE  # restic's --host for every snapshot, as VolSync's mover fixes its own (entry.sh:62)
STATE_BACKUP_SECRET = "headscale-restic"  # noqa: S105 - a Secret's name
# What the repository keeps: the data layer's defaults for a volume (stacks.data_model.Keep).
STATE_BACKUP_KEEP = {"daily": 7, "weekly": 4, "monthly": 6}
# Each restic call is bounded: a target that does not answer must not hold Headscale down (`timeout`, busybox's).
STATE_BACKUP_TIMEOUT_SECONDS = 300

# The init container's script, in the restic image's busybox sh. Environment: the Secret's (RESTIC_REPOSITORY,
# RESTIC_PASSWORD, the S3 keys), STATE (the claim's mount), TMPDIR, RESTIC_CACHE_DIR.
#
# - A claim that holds Headscale's database is backed up, then the repository's old snapshots forgotten (KEEP). A
#   backup that fails lets Headscale start all the same: the LAN's remote access does not wait on the NAS; the failure
#   is in this container's log, and the backup is taken again at the next restart.
# - An empty claim (a new one: a rebuilt Ainur, a lost card) is filled from the newest snapshot, then Headscale starts
#   with its devices as they were. A repository that does not exist yet is a first install: it is made, and Headscale
#   starts empty. A repository that cannot be read is neither: the container fails (and the kubelet retries it) rather
#   than start an empty Headscale, which would make new keys and a new database every device would have to join again.
# Whether the repository exists is asked as VolSync's mover asks it (volsync v0.16.0 mover-restic/entry.sh:91-150):
# `restic cat config` exits 10 for a repository that does not exist (restic v0.17.0 and later), and older restic says
# "Is there a repository at the following location?".
STATE_BACKUP_SCRIPT = r"""set -eu
say() { echo "iluvatar: Headscale's state: $*" >&2; }
err="$TMPDIR/restic.err"
bounded() { timeout "$BOUND" restic "$@" 2>"$err"; }
repository() {
  rc=0
  bounded cat config >/dev/null || rc=$?
  if [ "$rc" = 0 ]; then
    echo yes
  elif [ "$rc" = 10 ] || grep -q 'Is there a repository at the following location' "$err"; then
    echo no
  else
    echo "unreadable (exit $rc): $(tail -n 3 "$err" | tr '\n' ' ')"
  fi
}
cd "$STATE"
if [ -e db.sqlite ]; then
  found=$(repository)
  if [ "${found%% *}" = unreadable ]; then
    say "not backed up: the repository $RESTIC_REPOSITORY is $found; Headscale starts all the same, and the next restart backs it up"
    exit 0
  fi
  if [ "$found" = no ] && ! bounded init >/dev/null; then
    say "not backed up: restic init of $RESTIC_REPOSITORY failed: $(tail -n 3 "$err")"
    exit 0
  fi
  if ! bounded backup --host "$HOST" . >/dev/null; then
    say "not backed up: restic backup failed: $(tail -n 3 "$err")"
    exit 0
  fi
  bounded forget --host "$HOST" $KEEP --prune >/dev/null || say "backed up, but restic forget failed: $(tail -n 3 "$err")"
  say "backed up to $RESTIC_REPOSITORY"
  exit 0
fi
# A new volume is a new ext4 file system, which mkfs gives a lost+found folder: a claim holding only that is empty.
if [ -n "$(ls -A . | grep -vx 'lost+found')" ]; then
  say "the claim holds no db.sqlite but other files: neither backed up nor restored; Headscale makes its database"
  exit 0
fi
found=$(repository)
case "$found" in
  yes) ;;
  no)
    bounded init >/dev/null || { say "restic init of $RESTIC_REPOSITORY failed: $(tail -n 3 "$err")"; exit 1; }
    say "a new claim and a new repository: Headscale starts with a new state"
    exit 0;;
  *)
    say "the claim is empty and the repository $RESTIC_REPOSITORY is $found: Headscale is not started empty (every device would have to join again); fix the target and the pod starts again"
    exit 1;;
esac
snapshots=$(bounded snapshots --host "$HOST" --latest 1 --json) || { say "restic snapshots failed: $(tail -n 3 "$err")"; exit 1; }
id=$(printf '%s' "$snapshots" | sed -n 's/.*"short_id":"\([0-9a-f]*\)".*/\1/p')
if [ -z "$id" ]; then
  say "a new claim, and the repository has no snapshot: Headscale starts with a new state"
  exit 0
fi
bounded restore "$id" --target . >/dev/null || { say "restic restore of snapshot $id failed: $(tail -n 3 "$err")"; exit 1; }
say "the claim was empty: restored snapshot $id from $RESTIC_REPOSITORY"
"""

# The CronJob's script, in the curl image: stamp Headscale's pod template through the API with its own account's token,
# read from a file into a header file (never on a command line).
STATE_BACKUP_STAMP_SCRIPT = r"""set -eu
sa=/var/run/secrets/kubernetes.io/serviceaccount
printf 'Authorization: Bearer %s\n' "$(cat "$sa/token")" > "$TMPDIR/auth"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
curl -sS --fail-with-body --max-time 30 --cacert "$sa/ca.crt" -H @"$TMPDIR/auth" -X PATCH \
  -H 'Content-Type: application/strategic-merge-patch+json' \
  --data "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"$ANNOTATION\":\"$now\"}}}}}" \
  "https://kubernetes.default.svc/apis/apps/v1/namespaces/$NAMESPACE/deployments/$DEPLOYMENT" >/dev/null
echo "iluvatar: Headscale restarts for its state's backup ($now)"
"""


def state_backup_enabled(stack: StackConfig) -> bool:
    """Headscale's state is backed up wherever the stack has a backup target."""
    return stack.backup is not None


def state_repository(stack: StackConfig) -> str:
    """The restic repository of Headscale's state, beside the volumes' (plans.backup.repository)."""
    where = backup.target(stack)
    folder = f"headscale/{NAMESPACE}/{STATE_CLAIM}"
    if where.kind == "nfs":
        return f"/mnt/{backup.MOUNT}/{folder}"
    prefix = f"{where.prefix}/" if where.prefix else ""
    return f"s3:{where.endpoint}/{where.path}/{prefix}{folder}"


def state_backup_secret(stack: StackConfig, password: str, s3: tuple[str, str] | None) -> dict[str, Any]:
    """The Secret the init container reads (`password` and `s3` are Pulumi secrets at run time; the component keeps the
    whole stringData secret)."""
    values: dict[str, str] = {"RESTIC_REPOSITORY": state_repository(stack), "RESTIC_PASSWORD": password}
    if s3 is not None:
        assert stack.backup is not None
        values |= {"AWS_ACCESS_KEY_ID": s3[0], "AWS_SECRET_ACCESS_KEY": s3[1], "AWS_DEFAULT_REGION": stack.backup.region}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(STATE_BACKUP_SECRET), "type": "Opaque", "stringData": values}


def keep_flags() -> str:
    return " ".join(f"--keep-{k} {v}" for k, v in STATE_BACKUP_KEEP.items())


def state_backup_container(stack: StackConfig) -> dict[str, Any]:
    """The init container of Headscale's pod that backs its state up, or fills a new claim from the backup."""
    mounts = [{"name": "state", "mountPath": STATE_DIR}, {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - the pod's emptyDir
    if backup.target(stack).kind == "nfs":
        mounts.append({"name": "target", "mountPath": f"/mnt/{backup.MOUNT}"})
    return {
        "name": STATE_BACKUP,
        "image": pins.IMAGES["restic"],
        "command": ["/bin/sh", "-c", STATE_BACKUP_SCRIPT],
        "envFrom": [{"secretRef": {"name": STATE_BACKUP_SECRET}}],
        "env": [
            {"name": "STATE", "value": STATE_DIR},
            {"name": "HOST", "value": STATE_BACKUP_HOST},
            {"name": "KEEP", "value": keep_flags()},
            {"name": "BOUND", "value": str(STATE_BACKUP_TIMEOUT_SECONDS)},
            {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108 - the pod's emptyDir
            {"name": "RESTIC_CACHE_DIR", "value": "/tmp/cache"},  # noqa: S108 - the pod's emptyDir
        ],
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts,
    }


# RBAC cannot limit a patch to a field (a Role names verbs and objects only), so the stamp's account could rewrite all
# of Headscale's pod (its image, command, mounts) and with it own the tailnet. This policy on the Ainur's API server
# (ValidatingAdmissionPolicy, GA since Kubernetes 1.30) admits from that account only an update whose one change is
# the stamp: the Deployment's spec as it was but for the pod template's STATE_BACKUP_ANNOTATION.
STATE_BACKUP_ADMISSION = "iluvatar-backup-stamp"
# Every field of apps/v1 DeploymentSpec but the template, and of the template's ObjectMeta but its annotations
# (k8s.io/api apps/v1 types.go DeploymentSpec; meta/v1 types.go ObjectMeta), compared as optionals (`.?`): a field
# absent on both sides is equal, one set on one side only is a change.
_DEPLOYMENT_SPEC_FIELDS = ("replicas", "selector", "strategy", "minReadySeconds", "revisionHistoryLimit", "paused", "progressDeadlineSeconds")
_TEMPLATE_META_FIELDS = (
    "name", "generateName", "namespace", "labels", "finalizers", "ownerReferences", "deletionGracePeriodSeconds",
)  # fmt: skip


def state_backup_admission(stack: StackConfig) -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy and its binding (Deny) that bound the stamp's account to the stamp. Nothing when the
    stack has no backup target (no such account)."""
    if not state_backup_enabled(stack):
        return []
    same = [f"object.spec.?{f} == oldObject.spec.?{f}" for f in _DEPLOYMENT_SPEC_FIELDS]
    same.append("object.spec.template.spec == oldObject.spec.template.spec")
    same += [f"object.spec.template.metadata.?{f} == oldObject.spec.template.metadata.?{f}" for f in _TEMPLATE_META_FIELDS]
    key = STATE_BACKUP_ANNOTATION
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": STATE_BACKUP_ADMISSION},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["deployments"],
                        "resourceNames": [HEADSCALE],
                    }
                ],
            },
            # Only the stamp's account: an admin (Pulumi, Argo CD) changes Headscale's Deployment as it will.
            "matchConditions": [
                {"name": "by-the-stamp", "expression": f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{STATE_BACKUP}'"}
            ],
            "variables": [
                {"name": "new", "expression": "object.spec.template.metadata.?annotations.orValue({})"},
                {"name": "old", "expression": "oldObject.spec.template.metadata.?annotations.orValue({})"},
            ],
            "validations": [
                {
                    "expression": " && ".join(same),
                    "message": f"{STATE_BACKUP} may change only the pod template's annotation {key} of Deployment {HEADSCALE}",
                    "reason": "Forbidden",
                },
                {
                    "expression": (
                        f"variables.new.all(k, k == '{key}' || (k in variables.old && variables.old[k] == variables.new[k]))"
                        f" && variables.old.all(k, k == '{key}' || k in variables.new)"
                    ),
                    "message": f"{STATE_BACKUP} may change only the pod template's annotation {key} of Deployment {HEADSCALE}",
                    "reason": "Forbidden",
                },
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": STATE_BACKUP_ADMISSION},
        "spec": {"policyName": STATE_BACKUP_ADMISSION, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def state_backup_manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """The schedule of Headscale's state backup: an account that may patch Headscale's Deployment only, and the CronJob
    that stamps its template (STATE_BACKUP_STAMP_SCRIPT). Nothing when the stack has no backup target."""
    if not state_backup_enabled(stack):
        return []
    labels = {"app.kubernetes.io/name": STATE_BACKUP}
    restricted = {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "name": "stamp",
        "image": pins.IMAGES["curl"],
        "command": ["/bin/sh", "-c", STATE_BACKUP_STAMP_SCRIPT],
        "env": [
            {"name": "ANNOTATION", "value": STATE_BACKUP_ANNOTATION},
            {"name": "NAMESPACE", "value": NAMESPACE},
            {"name": "DEPLOYMENT", "value": HEADSCALE},
            {"name": "TMPDIR", "value": "/tmp"},  # noqa: S108 - the pod's emptyDir
        ],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": restricted,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - the pod's emptyDir
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(STATE_BACKUP, **labels)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(STATE_BACKUP, **labels),
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": [HEADSCALE], "verbs": ["patch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(STATE_BACKUP, **labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": STATE_BACKUP},
            "subjects": [{"kind": "ServiceAccount", "name": STATE_BACKUP, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": _meta(STATE_BACKUP, **labels),
            "spec": {
                "schedule": STATE_BACKUP_SCHEDULE,
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 1,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "backoffLimit": 2,
                        "activeDeadlineSeconds": 600,
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "restartPolicy": "Never",
                                "serviceAccountName": STATE_BACKUP,
                                "containers": [container],
                                "volumes": [{"name": "tmp", "emptyDir": {}}],
                            },
                        },
                    },
                },
            },
        },
    ]
