"""What both clusters' control planes are told for monitoring and sign-in: metrics bind addresses, and
the API servers' trust in Dex.

- **Monitoring** (Arda): Talos binds the scheduler's and the controller-manager's secure ports to
  loopback and etcd's metrics to nothing; Prometheus scrapes them only once they listen on the node
  (`cluster.scheduler`, `cluster.controllerManager` and `cluster.etcd` extra args).
- **Sign-in** (both): Kubernetes' structured `AuthenticationConfiguration` (GA in 1.34, beta in 1.33)
  names Dex as a JWT issuer, with the local CA inline (Dex's certificate is the local CA's), the
  audiences of kubectl's and Headlamp's clients (Headlamp's tokens are refused unless the API server
  accepts its audience, headlamp#670), and the claims a user and their groups come from, prefixed
  `oidc:` so no token can pass for a built-in user or group. Talos 1.12 has no setting for it: the
  file goes in with `machine.files` (Talos writes only under /var), reaches the API server's static pod
  through an extra volume, and is named with `authentication-config`; k3s takes the same file through
  `kube-apiserver-arg`. The API servers resolve Dex's name without the LAN's DNS: a `StaticHostConfig`
  on Talos, /etc/hosts (and cloud-init's template of it) on the Pis.

A leaf module: plans.talos and plans.k3s merge what it returns; it imports no other plan.
"""

from __future__ import annotations

import shlex
from typing import Any

from plans import yamltext
from stacks import identity as rules
from stacks.model import Node, StackConfig

# The claims' prefix: `oidc:alice@example.org`, group `oidc:example:admins`.
PREFIX = "oidc:"
# Dex's static clients whose ID tokens the API servers take: kubectl's (kubelogin) and Headlamp's.
KUBECTL_CLIENT = "kubernetes"
HEADLAMP_CLIENT = "headlamp"
# Where the file lives on a Talos control plane (machine.files writes only under /var) and in the API server's pod.
TALOS_HOST_DIR = "/var/etc/iluvatar"
TALOS_POD_DIR = "/etc/iluvatar"
FILE = "authentication-config.yaml"
K3S_FILE = "/etc/rancher/k3s/iluvatar-authentication-config.yaml"
# cloud-init rewrites /etc/hosts from this template at every boot (manage_etc_hosts, plans.cloudinit).
HOSTS_TEMPLATE = "/etc/cloud/templates/hosts.debian.tmpl"
HOSTS_MARK = "# iluvatar: dex"
# What the CA is under a render (pulumi-tls makes the real one at `pulumi up`).
CA_PLACEHOLDER = "-----BEGIN CERTIFICATE-----\n(the local root CA, from pulumi-tls at pulumi up)\n-----END CERTIFICATE-----\n"
# etcd's metrics port, as Talos's own docs open it.
ETCD_METRICS_PORT = 2381


def issuer(stack: StackConfig) -> str:
    """Dex's issuer URL: what every token's `iss` says, and what the API servers and Argo CD fetch discovery from."""
    assert stack.identity is not None
    return f"https://{rules.hosts(stack.identity, stack.network.domain)['dex']}"


def audiences(stack: StackConfig) -> list[str]:
    """The clients whose ID tokens the API servers accept: kubectl's, and Headlamp's when it runs."""
    assert stack.identity is not None
    return [KUBECTL_CLIENT, *([HEADLAMP_CLIENT] if stack.identity.headlamp is not None else [])]


def authentication_config(stack: StackConfig, minor: tuple[int, int], ca_certificate: str) -> dict[str, Any]:
    """The API server's AuthenticationConfiguration for Kubernetes `minor`: Dex, trusted through the local CA."""
    version = "v1" if minor >= (1, 34) else "v1beta1"
    return {
        "apiVersion": f"apiserver.config.k8s.io/{version}",
        "kind": "AuthenticationConfiguration",
        "jwt": [
            {
                "issuer": {
                    "url": issuer(stack),
                    "audiences": audiences(stack),
                    "audienceMatchPolicy": "MatchAny",
                    "certificateAuthority": ca_certificate,
                },
                "claimMappings": {
                    "username": {"claim": "email", "prefix": PREFIX},
                    "groups": {"claim": "groups", "prefix": PREFIX},
                },
            }
        ],
    }


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.removeprefix("v").split("+")[0].split(".")[:2]
    return int(major), int(minor)


def talos_documents(stack: StackConfig, node: Node, ca_certificate: str = CA_PLACEHOLDER) -> list[dict[str, Any]]:
    """A control plane's patch documents for monitoring and sign-in (none for a worker, or without either)."""
    if node.role != "valinor" or (stack.monitoring is None and stack.identity is None):
        return []
    machine: dict[str, Any] = {}
    cluster: dict[str, Any] = {}
    docs: list[dict[str, Any]] = []
    if stack.monitoring is not None:
        cluster["etcd"] = {"extraArgs": {"listen-metrics-urls": f"http://0.0.0.0:{ETCD_METRICS_PORT}"}}
        # The node's addresses: Prometheus scrapes them from other machines (their ports still need a token).
        cluster["scheduler"] = {"extraArgs": {"bind-address": "0.0.0.0"}}  # noqa: S104
        cluster["controllerManager"] = {"extraArgs": {"bind-address": "0.0.0.0"}}  # noqa: S104
    if stack.identity is not None:
        config = authentication_config(stack, _minor(stack.arda.kubernetes_version), ca_certificate)
        machine["files"] = [{"content": yamltext.dump(config), "permissions": 0o644, "path": f"{TALOS_HOST_DIR}/{FILE}", "op": "create"}]
        cluster["apiServer"] = {
            "extraArgs": {"authentication-config": f"{TALOS_POD_DIR}/{FILE}"},
            "extraVolumes": [{"hostPath": TALOS_HOST_DIR, "mountPath": TALOS_POD_DIR, "readonly": True}],
        }
    docs.append({**({"machine": machine} if machine else {}), "cluster": cluster})
    if stack.identity is not None:
        dex = rules.hosts(stack.identity, stack.network.domain)["dex"]
        docs.append({"apiVersion": "v1alpha1", "kind": "StaticHostConfig", "name": str(stack.identity.ip), "hostnames": [dex]})
    return docs


def k3s_server_config(stack: StackConfig) -> dict[str, Any]:
    """What a k3s server's config adds: the API server's authentication config (none without identity)."""
    if stack.identity is None:
        return {}
    return {"kube-apiserver-arg": [f"authentication-config={K3S_FILE}"]}


def k3s_authentication(stack: StackConfig, ca_certificate: str) -> str:
    """The file a k3s server's API server reads (Kubernetes of the Ainur's k3s version)."""
    assert stack.ainur is not None
    return yamltext.dump(authentication_config(stack, _minor(stack.ainur.k3s_version), ca_certificate))


def k3s_authentication_script(stack: StackConfig) -> str:
    """Run over SSH on a valar with the authentication config on stdin: install it, and name Dex in /etc/hosts
    (and in cloud-init's template of it, which rewrites /etc/hosts at every boot). Safe to run again; k3s's API
    server reloads the file when it changes.

    The earlier Dex line goes first (sed), then the line is appended; GNU sed's `$a\\` ends the file with a newline
    if it has none (a hand-edited /etc/hosts may not), so the line is appended as a line of its own instead of
    onto the file's last one, which the next run would then delete with it (tests/netns/test_k3s_steps.py)."""
    assert stack.identity is not None
    dex = rules.hosts(stack.identity, stack.network.domain)["dex"]
    line = shlex.quote(f"{stack.identity.ip} {dex} {HOSTS_MARK}")
    mark = shlex.quote(f"/{HOSTS_MARK}$/d")
    return f"""set -eu
umask 022
new=$(mktemp)
trap 'rm -f "$new"' EXIT
cat > "$new"
sudo install -D -m 0644 "$new" {K3S_FILE}
for hosts in /etc/hosts {HOSTS_TEMPLATE}; do
  [ -f "$hosts" ] || continue
  sudo sed -i -e {mark} -e '$a\\' "$hosts"
  echo {line} | sudo tee -a "$hosts" >/dev/null
done
"""
