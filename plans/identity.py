"""Identity plan: Dex on the Ainur, the front door people reach it by, and every client that trusts it.

- **Dex** (v2.45.1, a Deployment and its Service: Dex's chart is not obtainable here) runs on the Ainur
  with its state in the Ainur's API (`storage: kubernetes`), serving https with a certificate of the
  local CA (components.identity issues it with pulumi-tls). Its clients: Argo CD on each cluster and
  Headlamp (confidential, each with a secret Pulumi generates) and kubectl (`kubernetes`, public,
  kubelogin's localhost redirects). People come from the stack's connector (GitHub, LDAP, or a static
  admin), whose secret is `iluvatar:identityConnectorSecret`.
- **The front door** (nginx at `identity.ip`, a kube-vip address): https passed through by name (SNI)
  to Dex and to the Ainur's Argo CD, each serving its own certificate; plain http serves the local
  CA's page, its certificate and SHA-256 fingerprint, which a phone can trust before anything else.
- **Who trusts Dex**: both API servers (plans.apiserver), each group of the stack bound to its
  ClusterRole on both clusters (`cluster_role_bindings`); Argo CD on both clusters (`argocd_values`:
  its `oidc.config` with the local CA as `rootCA`, argo-cd#4344, and RBAC from the same groups);
  Headlamp on Arda (`headlamp_application`, chart v0.44.0 from its Git tag, behind envoy-internal).

Plain functions returning manifests and text; no Pulumi here.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import uuid
from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Any

from plans import apiserver, gitops, netpol, yamltext
from plans.edge import GATEWAY_NAMESPACE
from plans.netboot.pods import NGINX_IMAGE
from stacks import identity as rules
from stacks import pins
from stacks.edge import edge_addresses
from stacks.model import App, GroupBinding, Identity, StackConfig

DEX_VERSION = pins.APPS["dex"]
DEX_IMAGE = f"ghcr.io/dexidp/dex:{DEX_VERSION}"
NAMESPACE = "identity"
DEX = "dex"
DEX_PORT = 5556
TELEMETRY_PORT = 5558
DEX_REPLICAS = 2
DEX_CONFIG_SECRET = "dex-config"  # noqa: S105 - a Kubernetes object name, not a secret
DEX_TLS_SECRET = "dex-tls"  # noqa: S105 - a Kubernetes object name, not a secret
FRONT_DOOR = "front-door"
FRONT_DOOR_HTTP = 8080
FRONT_DOOR_HTTPS = 8443
# Dex's clients: Argo CD per cluster and Headlamp (secrets from Pulumi), kubectl (public).
ARGOCD_CLIENTS = {"arda": "argocd-arda", "ainur": "argocd-ainur"}
HEADLAMP_CLIENT = apiserver.HEADLAMP_CLIENT
KUBECTL_CLIENT = apiserver.KUBECTL_CLIENT
# kubelogin's callbacks (its default port, and its fallback), and the Argo CD CLI's.
KUBECTL_REDIRECTS = ("http://localhost:8000", "http://localhost:18000")
ARGOCD_CLI_REDIRECT = "http://localhost:8085/auth/callback"
SCOPES = ("openid", "profile", "email", "groups")
# The Secret Argo CD reads its client secret from (`$argocd-oidc:clientSecret`: Argo CD resolves secrets labelled part-of argocd).
ARGOCD_OIDC_SECRET = "argocd-oidc"  # noqa: S105 - a Kubernetes object name, not a secret
ARGOCD_TLS_SECRET = "argocd-server-tls"  # noqa: S105 - a Kubernetes object name, not a secret
ARGOCD_SERVER = "argocd-server"
# What each ClusterRole is in Argo CD: its built-in roles, and one for editing apps without changing projects or clusters.
ARGOCD_ROLES = {"cluster-admin": "role:admin", "admin": "role:admin", "edit": "role:iluvatar-edit", "view": "role:readonly"}
ARGOCD_EDIT_POLICY = (
    "p, role:iluvatar-edit, applications, *, */*, allow",
    "p, role:iluvatar-edit, applicationsets, get, */*, allow",
    "p, role:iluvatar-edit, logs, get, */*, allow",
    "g, role:iluvatar-edit, role:readonly",
)
# Headlamp: chart 0.44.0 is published from its repository's tag (the module at v0.44.0 still says 0.43.0, and its image tag with it).
HEADLAMP_VERSION = pins.CHARTS["headlamp"]
HEADLAMP_REPOSITORY = "https://github.com/kubernetes-sigs/headlamp.git"
HEADLAMP_CHART_PATH = "charts/headlamp"
HEADLAMP_SECRET = "headlamp-oidc"  # noqa: S105 - a Kubernetes object name, not a secret
HEADLAMP_CA = "iluvatar-ca"
CA_DIR = "/etc/iluvatar"
# Certificates the local CA issues for the Ainur's front door (pulumi-tls renews them this long before their end).
CERTIFICATE_VALIDITY_HOURS = 365 * 24
CERTIFICATE_EARLY_RENEWAL_HOURS = 30 * 24
# How long Dex's tokens last (its config's `expiry`): an hour's ID token; a refresh token unused for a week, or older
# than 30 days, ends and its user signs in again (plans.lifetimes lists them).
DEX_ID_TOKENS = "1h"
DEX_REFRESH_TOKENS = {"validIfNotUsedFor": "168h", "absoluteLifetime": "720h"}
MANAGED_BY = gitops.MANAGED_BY


def settings(stack: StackConfig) -> Identity:
    if stack.identity is None:
        raise ValueError("the stack has no iluvatar:identity")
    return stack.identity


def hosts(stack: StackConfig) -> dict[str, str]:
    return rules.hosts(settings(stack), stack.network.domain)


def issuer(stack: StackConfig) -> str:
    return apiserver.issuer(stack)


def argocd_clusters(stack: StackConfig) -> list[str]:
    """The clusters whose Argo CD signs in with Dex: both with GitOps (the Ainur's only with the Ainur)."""
    if stack.gitops is None:
        return []
    return ["arda", *(["ainur"] if stack.ainur is not None else [])]


def headlamp_app(stack: StackConfig) -> App | None:
    headlamp = settings(stack).headlamp
    if headlamp is None or stack.gitops is None:
        return None
    return next(a for a in stack.apps if a.name == headlamp.app)


def confidential_clients(stack: StackConfig) -> list[str]:
    """The clients with a secret (Pulumi generates one each, components.identity)."""
    return [*(ARGOCD_CLIENTS[c] for c in argocd_clusters(stack)), *([HEADLAMP_CLIENT] if headlamp_app(stack) is not None else [])]


def argocd_host(stack: StackConfig, cluster: str) -> str:
    return hosts(stack)["argocd" if cluster == "arda" else "argocd_ainur"]


# --- Dex ------------------------------------------------------------------------------------------------


def user_id(email: str) -> str:
    """The static admin's stable user id (Dex's `userID`), from the e-mail."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{email}"))


def connectors(stack: StackConfig, secret: str) -> dict[str, Any]:
    """The part of Dex's config for the stack's connector: `connectors`, or the password DB for a static admin."""
    connector = settings(stack).connector
    callback = f"{issuer(stack)}/callback"
    config: dict[str, Any]
    if connector.type == "github":
        config = {
            "clientID": connector.client_id,
            "clientSecret": secret,
            "redirectURI": callback,
            "orgs": [{"name": org} for org in connector.orgs],
            "teamNameField": "slug",
        }
        return {"connectors": [{"type": "github", "id": "github", "name": "GitHub", "config": config}]}
    if connector.type == "ldap":
        config = {
            "host": connector.host,
            "bindDN": connector.bind_dn,
            "bindPW": secret,
            "usernamePrompt": "User name",
            "userSearch": {
                "baseDN": connector.user_base_dn,
                "filter": "(objectClass=person)",
                "username": "uid",
                "idAttr": "uid",
                "emailAttr": "mail",
                "nameAttr": "cn",
            },
            "groupSearch": {
                "baseDN": connector.group_base_dn,
                "filter": "(objectClass=groupOfNames)",
                "userMatchers": [{"userAttr": "DN", "groupAttr": "member"}],
                "nameAttr": "cn",
            },
        }
        return {"connectors": [{"type": "ldap", "id": "ldap", "name": "LDAP", "config": config}]}
    assert connector.email is not None
    admin = {
        "email": connector.email,
        "hash": secret,
        "username": connector.email.split("@", 1)[0],
        "userID": user_id(connector.email),
        "groups": list(connector.groups),
    }
    # The password grant lets kubelogin sign in without a browser (`--grant-type=password`).
    return {"enablePasswordDB": True, "staticPasswords": [admin], "oauth2Extra": {"passwordConnector": "local"}}


def static_clients(stack: StackConfig, secrets: Mapping[str, str]) -> list[dict[str, Any]]:
    """Dex's clients: Argo CD per cluster and Headlamp with their secrets (`secrets` by client id), kubectl public."""
    out: list[dict[str, Any]] = []
    for cluster in argocd_clusters(stack):
        client = ARGOCD_CLIENTS[cluster]
        host = argocd_host(stack, cluster)
        out.append(
            {
                "id": client,
                "name": f"Argo CD ({cluster})",
                "secret": secrets[client],
                "redirectURIs": [f"https://{host}/auth/callback", ARGOCD_CLI_REDIRECT],
            }
        )
    app = headlamp_app(stack)
    if app is not None:
        out.append(
            {"id": HEADLAMP_CLIENT, "name": "Headlamp", "secret": secrets[HEADLAMP_CLIENT], "redirectURIs": [f"https://{app.host}/oidc-callback"]}
        )
    out.append({"id": KUBECTL_CLIENT, "name": "kubectl", "public": True, "redirectURIs": list(KUBECTL_REDIRECTS)})
    return out


def dex_config(stack: StackConfig, client_secrets: Mapping[str, str], connector_secret: str) -> dict[str, Any]:
    """Dex's whole config (its Secret's `config.yaml`): callers pass Pulumi secrets and keep it secret."""
    parts = connectors(stack, connector_secret)
    extra = parts.pop("oauth2Extra", {})
    return {
        "issuer": issuer(stack),
        "storage": {"type": "kubernetes", "config": {"inCluster": True}},
        "web": {"https": f"0.0.0.0:{DEX_PORT}", "tlsCert": "/etc/dex/tls/tls.crt", "tlsKey": "/etc/dex/tls/tls.key"},
        "telemetry": {"http": f"0.0.0.0:{TELEMETRY_PORT}"},
        "oauth2": {"skipApprovalScreen": True, **extra},
        "expiry": {"idTokens": DEX_ID_TOKENS, "refreshTokens": dict(DEX_REFRESH_TOKENS)},
        "staticClients": static_clients(stack, client_secrets),
        **parts,
    }


def _meta(name: str, namespace: str | None = NAMESPACE, **labels: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {**MANAGED_BY, **labels}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return metadata


def dex_config_secret(stack: StackConfig, client_secrets: Mapping[str, str], connector_secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(DEX_CONFIG_SECRET),
        "type": "Opaque",
        "stringData": {"config.yaml": yamltext.dump(dex_config(stack, client_secrets, connector_secret))},
    }


def tls_secret(name: str, namespace: str, cert: str, key: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, namespace, **labels),
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert, "tls.key": key},
    }


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {**_meta(NAMESPACE, None), "annotations": dict(gitops.PULUMI_OWNED)}}


def dex_manifests() -> list[dict[str, Any]]:
    """Dex on the Ainur: its account (its CRDs and its own objects in its namespace), the Deployment, the Service."""
    labels = {"app.kubernetes.io/name": DEX}
    rbac = "rbac.authorization.k8s.io/v1"
    pod = {
        "serviceAccountName": DEX,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 1001, "seccompProfile": {"type": "RuntimeDefault"}},
        # Two Dex on two Pis: a login survives a dead Pi.
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": labels}}}
                ]
            }
        },
        "containers": [
            {
                "name": DEX,
                "image": DEX_IMAGE,
                "args": ["dex", "serve", "/etc/dex/config.yaml"],
                "ports": [
                    {"name": "https", "containerPort": DEX_PORT, "protocol": "TCP"},
                    {"name": "telemetry", "containerPort": TELEMETRY_PORT, "protocol": "TCP"},
                ],
                "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": "telemetry"}, "periodSeconds": 10},
                "livenessProbe": {"httpGet": {"path": "/healthz/live", "port": "telemetry"}, "periodSeconds": 30},
                "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/dex/config.yaml", "subPath": "config.yaml", "readOnly": True},
                    {"name": "tls", "mountPath": "/etc/dex/tls", "readOnly": True},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "secret": {"secretName": DEX_CONFIG_SECRET}},
            {"name": "tls", "secret": {"secretName": DEX_TLS_SECRET}},
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(DEX, **labels)},
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": _meta("iluvatar-dex", None, **labels),
            "rules": [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["create"]}],
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": _meta("iluvatar-dex", None, **labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "iluvatar-dex"},
            "subjects": [{"kind": "ServiceAccount", "name": DEX, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": _meta(DEX, **labels),
            "rules": [{"apiGroups": ["dex.coreos.com"], "resources": ["*"], "verbs": ["*"]}],
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": _meta(DEX, **labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DEX},
            "subjects": [{"kind": "ServiceAccount", "name": DEX, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(DEX, **labels),
            "spec": {"replicas": DEX_REPLICAS, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(DEX, **labels),
            "spec": {"selector": labels, "ports": [{"name": "https", "port": DEX_PORT, "targetPort": "https", "protocol": "TCP"}]},
        },
        # Every pod of the namespace admits nothing a policy does not allow; Dex admits its https from the front door
        # alone, which passes everyone's logins to it by name. Its telemetry (health, metrics) only the kubelet reaches,
        # from the pod's own node (plans.netpol).
        netpol.default_deny(NAMESPACE, **labels),
        netpol.allow(DEX, NAMESPACE, labels, [netpol.port(DEX_PORT)], [netpol.pods(FRONT_DOOR)], **labels),
    ]


# --- The front door and the local CA's page ---------------------------------------------------------------


def fingerprint(pem: str) -> str:
    """A certificate's SHA-256 fingerprint as browsers and phones show it (AB:CD:...), or a note when `pem` is no certificate."""
    body = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)
    try:
        der = base64.b64decode("".join(body.group(1).split()), validate=True) if body else b""
    except ValueError:
        der = b""
    if not der:
        return "(computed from the certificate at pulumi up)"
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def ca_page(stack: StackConfig, ca_certificate: str) -> str:
    """The CA page: what the certificate is, its fingerprint to compare, and how to install it."""
    name = html.escape(f"Iluvatar {stack.arda.cluster_name} root CA")
    hosts_ = hosts(stack)
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{name}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em">
<h1>{name}</h1>
<p>Every name of this homelab ({html.escape(stack.network.domain)}) is served with a certificate of this CA. Install it once on each device:</p>
<p><a href="/ca.crt" download="iluvatar-ca.crt"><strong>Download the CA certificate (ca.crt)</strong></a></p>
<p>Before you trust it, check that your device shows this SHA-256 fingerprint:</p>
<pre style="white-space: pre-wrap; word-break: break-all">{fingerprint(ca_certificate)}</pre>
<ul>
<li><strong>iPhone, iPad</strong>: open the download, install the profile (Settings, Profile Downloaded), then turn on full trust in Settings, General, About, Certificate Trust Settings.</li>
<li><strong>Android</strong>: Settings, Security, Encryption and credentials, Install a certificate, CA certificate.</li>
<li><strong>macOS</strong>: open it in Keychain Access, and set it to Always Trust. <strong>Windows</strong>: open it, Install Certificate, Trusted Root Certification Authorities.</li>
<li><strong>Linux</strong>: copy it to /usr/local/share/ca-certificates/iluvatar-ca.crt and run update-ca-certificates.</li>
</ul>
<p>Then sign in at <a href="https://{html.escape(hosts_["dex"])}/">{html.escape(hosts_["dex"])}</a>'s clients: Argo CD, Headlamp, kubectl.</p>
</body>
</html>
"""


def front_door_conf(stack: StackConfig) -> str:
    """nginx: https passed through by name (the client's SNI) to Dex and the Ainur's Argo CD; http serves the CA page."""
    hosts_ = hosts(stack)
    backends = {hosts_["dex"]: "dex"}
    upstreams = {"dex": f"{DEX}.{NAMESPACE}.svc.cluster.local:{DEX_PORT}"}
    if "ainur" in argocd_clusters(stack):
        backends[hosts_["argocd_ainur"]] = "argocd"
        upstreams["argocd"] = f"{ARGOCD_SERVER}.{gitops.NAMESPACE}.svc.cluster.local:443"
    lines = [
        "# The Ainur's front door (Iluvatar, plans.identity): TLS passed through by name; the local CA's page over http.",
        "worker_processes 1;",
        "pid /tmp/nginx.pid;",
        "error_log /dev/stderr warn;",
        "events { worker_connections 512; }",
        "stream {",
        *(f"  upstream {name} {{ server {address}; }}" for name, address in upstreams.items()),
        "  map $ssl_preread_server_name $backend {",
        *(f"    {host} {name};" for host, name in backends.items()),
        "    default dex;",
        "  }",
        "  server {",
        f"    listen {FRONT_DOOR_HTTPS};",
        "    ssl_preread on;",
        "    proxy_pass $backend;",
        "  }",
        "}",
        "http {",
        "  access_log off;",
        "  client_body_temp_path /tmp/client_body;",
        "  proxy_temp_path /tmp/proxy;",
        "  fastcgi_temp_path /tmp/fastcgi;",
        "  uwsgi_temp_path /tmp/uwsgi;",
        "  scgi_temp_path /tmp/scgi;",
        "  server {",
        f"    listen {FRONT_DOOR_HTTP};",
        "    root /srv/ca;",
        "    location = / { default_type text/html; try_files /index.html =404; }",
        "    location = /ca.crt { default_type application/x-x509-ca-cert; }",
        "    location / { return 404; }",
        "  }",
        "}",
        "",
    ]
    return "\n".join(lines)


def front_door_manifests(stack: StackConfig, ca_certificate: str) -> list[dict[str, Any]]:
    """The front door: its config and the CA page (a ConfigMap), nginx, and the LoadBalancer at identity.ip."""
    identity = settings(stack)
    labels = {"app.kubernetes.io/name": FRONT_DOOR}
    pod = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 101, "runAsGroup": 101, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "nginx",
                "image": NGINX_IMAGE,
                "command": ["nginx", "-g", "daemon off;", "-c", "/etc/front-door/nginx.conf"],
                "ports": [
                    {"name": "http", "containerPort": FRONT_DOOR_HTTP, "protocol": "TCP"},
                    {"name": "https", "containerPort": FRONT_DOOR_HTTPS, "protocol": "TCP"},
                ],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/front-door/nginx.conf", "subPath": "nginx.conf", "readOnly": True},
                    {"name": "config", "mountPath": "/srv/ca/index.html", "subPath": "index.html", "readOnly": True},
                    {"name": "config", "mountPath": "/srv/ca/ca.crt", "subPath": "ca.crt", "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
                ],
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": FRONT_DOOR}}, {"name": "tmp", "emptyDir": {}}],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(FRONT_DOOR, **labels),
            "data": {"nginx.conf": front_door_conf(stack), "index.html": ca_page(stack, ca_certificate), "ca.crt": ca_certificate},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(FRONT_DOOR, **labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                # A new config is a new pod: the ConfigMap's digest in the template.
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {"iluvatar.dev/config-digest": gitops.values_digest({"nginx": front_door_conf(stack), "ca": ca_certificate})},
                    },
                    "spec": pod,
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**_meta(FRONT_DOOR, **labels), "annotations": {"kube-vip.io/loadbalancerIPs": str(identity.ip)}},
            # No NodePort: kube-vip's address is the door (plans.netpol).
            "spec": netpol.load_balancer(
                [
                    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                    {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
                ],
                selector=labels,
            ),
        },
        # The front door is for everyone (the LAN, the tailnet's members, the API servers checking tokens), on its two
        # listeners only.
        netpol.allow(FRONT_DOOR, NAMESPACE, labels, [netpol.port(FRONT_DOOR_HTTP), netpol.port(FRONT_DOOR_HTTPS)], None, **labels),
    ]


def lan_records(stack: StackConfig) -> list[tuple[str, IPv4Address]]:
    """What the Ainur's DNS answers for sign-in: Dex, the CA page and the Ainur's Argo CD at the front door;
    Arda's Argo CD at envoy-internal. None without identity."""
    if stack.identity is None:
        return []
    hosts_ = hosts(stack)
    records = [(hosts_["dex"], stack.identity.ip), (hosts_["ca"], stack.identity.ip)]
    if "ainur" in argocd_clusters(stack):
        records.append((hosts_["argocd_ainur"], stack.identity.ip))
    if "arda" in argocd_clusters(stack):
        records.append((hosts_["argocd"], edge_addresses(stack.network.load_balancer_pool, stack.edge)["envoy-internal"]))
    return sorted(records)


def certificate_names(stack: StackConfig) -> dict[str, list[str]]:
    """The certificates the local CA issues on the Ainur, by name: Dex's, and the Ainur's Argo CD's."""
    hosts_ = hosts(stack)
    out = {DEX: [hosts_["dex"]]}
    if "ainur" in argocd_clusters(stack):
        out["argocd-ainur"] = [hosts_["argocd_ainur"], f"{ARGOCD_SERVER}.{gitops.NAMESPACE}.svc"]
    return out


# --- Who trusts Dex ---------------------------------------------------------------------------------------


def binding_name(binding: GroupBinding) -> str:
    """A ClusterRoleBinding's name for a group: readable, and unique for any group name."""
    slug = re.sub(r"[^a-z0-9-]+", "-", binding.group.lower()).strip("-")[:40] or "group"
    return f"oidc-{slug}-{hashlib.sha256(binding.group.encode()).hexdigest()[:8]}"


def cluster_role_bindings(stack: StackConfig) -> list[dict[str, Any]]:
    """Each group of the stack bound to its ClusterRole, as the API servers name it (`oidc:<group>`)."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {**_meta(binding_name(b), None), "annotations": {"iluvatar.dev/group": b.group}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": b.cluster_role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": f"{apiserver.PREFIX}{b.group}"}],
        }
        for b in settings(stack).groups
    ]


def argocd_policy(stack: StackConfig) -> str:
    """Argo CD's RBAC from the same groups (Argo CD sees the groups claim as Dex says it, without the API servers' prefix)."""
    groups = [f"g, {b.group}, {ARGOCD_ROLES[b.cluster_role]}" for b in settings(stack).groups if b.cluster_role in ARGOCD_ROLES]
    return "\n".join([*ARGOCD_EDIT_POLICY, *groups]) + "\n"


def argocd_values(stack: StackConfig, cluster: str, ca_certificate: str) -> dict[str, Any]:
    """An Argo CD's chart values for signing in with Dex: its URL, `oidc.config` (the local CA as `rootCA`,
    its client secret from ARGOCD_OIDC_SECRET), RBAC from the groups, and Dex's name for its pods. {} without identity."""
    if stack.identity is None or cluster not in argocd_clusters(stack):
        return {}
    oidc = {
        "name": "Iluvatar",
        "issuer": issuer(stack),
        "clientID": ARGOCD_CLIENTS[cluster],
        "clientSecret": f"${ARGOCD_OIDC_SECRET}:clientSecret",
        "requestedScopes": list(SCOPES),
        "rootCA": ca_certificate,
    }
    values: dict[str, Any] = {
        "global": {"hostAliases": [{"ip": str(stack.identity.ip), "hostnames": [hosts(stack)["dex"]]}]},
        "configs": {
            "cm": {"url": f"https://{argocd_host(stack, cluster)}", "oidc.config": yamltext.dump(oidc)},
            # Signed-in people get only what their groups give (no default role).
            "rbac": {"policy.default": "", "policy.csv": argocd_policy(stack), "scopes": "[groups]"},
        },
    }
    if cluster == "arda":
        # envoy-internal ends TLS and talks plain http to the server (which would otherwise redirect to https).
        values["configs"]["params"] = {"server.insecure": True}
    return values


def argocd_oidc_secret(client_secret: str) -> dict[str, Any]:
    """The Secret Argo CD reads its client secret from (`$argocd-oidc:clientSecret` in oidc.config)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(ARGOCD_OIDC_SECRET, gitops.NAMESPACE, **{"app.kubernetes.io/part-of": "argocd"}),
        "type": "Opaque",
        "stringData": {"clientSecret": client_secret},
    }


def argocd_route(stack: StackConfig) -> dict[str, Any]:
    """Arda's Argo CD on envoy-internal at its host (its server speaks plain http behind it)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(ARGOCD_SERVER, gitops.NAMESPACE),
        "spec": {
            "parentRefs": [{"name": "envoy-internal", "namespace": GATEWAY_NAMESPACE, "sectionName": "https"}],
            "hostnames": [hosts(stack)["argocd"]],
            "rules": [{"backendRefs": [{"name": ARGOCD_SERVER, "port": 80}]}],
        },
    }


# --- Headlamp ---------------------------------------------------------------------------------------------


def headlamp_values(stack: StackConfig) -> dict[str, Any]:
    """Headlamp's chart values: its app's Service name and port, Dex through its Secret, users acting as themselves."""
    app = headlamp_app(stack)
    assert app is not None
    return {
        "image": {"tag": HEADLAMP_VERSION},
        "fullnameOverride": app.service_name,
        "service": {"port": app.http.port},
        "config": {
            "oidc": {
                "secret": {"create": False},
                "externalSecret": {"enabled": True, "name": HEADLAMP_SECRET, "hasScopes": True},
                "callbackURL": f"https://{app.host}/oidc-callback",
            }
        },
        # Each person acts with their own token: the service account gets no cluster-admin.
        "clusterRoleBinding": {"create": False},
        "hostAliases": [{"ip": str(settings(stack).ip), "hostnames": [hosts(stack)["dex"]]}],
        "env": [{"name": "SSL_CERT_FILE", "value": f"{CA_DIR}/ca.crt"}],
        "volumes": [{"name": "iluvatar-ca", "configMap": {"name": HEADLAMP_CA}}],
        "volumeMounts": [{"name": "iluvatar-ca", "mountPath": CA_DIR, "readOnly": True}],
    }


def headlamp_application(stack: StackConfig) -> dict[str, Any]:
    app = headlamp_app(stack)
    assert app is not None
    return gitops.platform_application(
        "headlamp",
        path=HEADLAMP_CHART_PATH,
        repo_url=HEADLAMP_REPOSITORY,
        version=HEADLAMP_VERSION,
        values=headlamp_values(stack),
        namespace=app.namespace,
    )


def headlamp_secret(stack: StackConfig, client_secret: str) -> dict[str, Any]:
    """What Headlamp reads its OIDC settings from (the chart's externalSecret): the client secret is Pulumi's."""
    app = headlamp_app(stack)
    assert app is not None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(HEADLAMP_SECRET, app.namespace),
        "type": "Opaque",
        "stringData": {
            "OIDC_CLIENT_ID": HEADLAMP_CLIENT,
            "OIDC_CLIENT_SECRET": client_secret,
            "OIDC_ISSUER_URL": issuer(stack),
            "OIDC_SCOPES": ",".join(SCOPES),
            "OIDC_CALLBACK_URL": f"https://{app.host}/oidc-callback",
        },
    }


def headlamp_ca(stack: StackConfig, ca_certificate: str) -> dict[str, Any]:
    app = headlamp_app(stack)
    assert app is not None
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(HEADLAMP_CA, app.namespace), "data": {"ca.crt": ca_certificate}}


# --- kubectl --------------------------------------------------------------------------------------------


def cluster_ca(kubeconfig_text: str) -> str:
    """A kubeconfig's cluster CA (`certificate-authority-data`, public), or "" when it has none (a render's placeholder)."""
    try:
        doc = next(iter(yamltext.load_all(kubeconfig_text)), None) if kubeconfig_text else None
    except Exception:
        return ""
    clusters = doc.get("clusters") if isinstance(doc, dict) else None
    if not isinstance(clusters, list) or not clusters or not isinstance(clusters[0], dict):
        return ""
    return str((clusters[0].get("cluster") or {}).get("certificate-authority-data") or "")


def kubeconfig(stack: StackConfig, cluster: str, server: str, cluster_ca: str, ca_certificate: str) -> dict[str, Any]:
    """A kubeconfig that signs in with Dex through kubelogin (`kubectl oidc-login`): no secret in it. kubelogin
    trusts Dex through the local CA (`ca_certificate`), whatever the machine it runs on trusts."""
    name = f"{cluster}-oidc"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": cluster_ca}}],
        "users": [
            {
                "name": name,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": "kubectl",
                        "args": [
                            "oidc-login",
                            "get-token",
                            f"--oidc-issuer-url={issuer(stack)}",
                            f"--oidc-client-id={KUBECTL_CLIENT}",
                            "--oidc-extra-scope=email",
                            "--oidc-extra-scope=groups",
                            f"--certificate-authority-data={base64.b64encode(ca_certificate.encode()).decode()}",
                        ],
                        "interactiveMode": "IfAvailable",
                        "provideClusterInfo": False,
                    }
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": cluster, "user": name}}],
        "current-context": name,
    }
