"""One login, proven with the real programs: Dex itself (v2.45.1) on the config the identity plan renders
issues the token, and the real kube-apiserver of each cluster's minor (1.34 for Arda, Talos's file; 1.33
for the Ainur, k3s's file) started with the rendered AuthenticationConfiguration takes it, as the user and
groups the stack binds, and refuses a token for another audience.

The API server reaches Dex by its real name (an /etc/hosts of its own in a mount namespace, the way the
machines' static host entries name it), over TLS checked against the local CA inline in the config. Dex
listens on port 443 of a loopback address of this test's (the issuer URL has no port): root.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from plans import apiserver, identity
from stacks import StackConfig, parse_stack, read_stack_file
from tests.edit import HOMELAB, without
from tools import dex_check
from tools.kube_cluster import K3S, TALOS, Cluster, Flavor

pytestmark = pytest.mark.kube

PASSWORD = "correct horse battery staple"


def static_stack(role: str) -> StackConfig:
    """The homelab with its connector a static admin in group `admins`, bound to `role` (without its remote access,
    whose grants name the groups it binds)."""
    sf = read_stack_file(HOMELAB)
    raw = without(dict(sf.config), ("iluvatar:remoteAccess",))
    raw["iluvatar:identity"] = {
        **raw["iluvatar:identity"],
        "connector": {"type": "static", "email": "admin@example.org", "groups": ["admins"]},
        "groups": [{"group": "admins", "clusterRole": role}],
    }
    return parse_stack(raw, sf.secret_keys)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local CA and Dex's certificate from it, as components.local_ca issues it (the name only)."""
    root = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-days", "1", "-keyout", str(root / "ca.key"), "-out", str(root / "ca.crt"), "-subj", "/CN=Iluvatar test root CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    dex = identity.hosts(static_stack("view"))["dex"]
    _openssl("req", "-x509", *ec, "-days", "1", "-CA", str(root / "ca.crt"), "-CAkey", str(root / "ca.key"), "-keyout", str(root / "tls.key"),
             "-out", str(root / "tls.crt"), "-subj", f"/CN={dex}", "-addext", f"subjectAltName=DNS:{dex}")  # fmt: skip
    return root


@pytest.fixture(scope="module")
def dex(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """Dex on the rendered config (a static admin bound to `view`), at 443 of a loopback address; (address, client secrets)."""
    if os.geteuid() != 0:
        pytest.skip("Dex listens on port 443 (the issuer URL's), which needs root")
    stack = static_stack("view")
    secrets = {client: f"secret-of-{client}" for client in identity.confidential_clients(stack)}
    config = identity.dex_config(stack, secrets, dex_check.bcrypt_hash(PASSWORD))
    address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    root = tmp_path_factory.mktemp("dex")
    with dex_check.serving(dex_check.for_test(config, f"{address}:443", pki, f"{address}:5558"), root, f"{address}:443", pki / "ca.crt"):
        yield address, secrets


def rendered_authentication(flavor: Flavor, stack: StackConfig, ca: str) -> str:
    """The file each cluster's API server reads, as the plans render it: Talos's machine file, or k3s's."""
    if flavor is TALOS:
        [node] = [n for n in stack.nodes if n.role == "valinor"][:1]
        [file] = apiserver.talos_documents(stack, node, ca)[0]["machine"]["files"]
        content: str = file["content"]
        return content
    return apiserver.k3s_authentication(stack, ca)


@pytest.fixture(scope="module")
def started(
    pki: Path, dex: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """One API server per flavor for the module's tests (they only ask it who a token is): started with the
    rendered authentication config, the stack's group bindings created."""
    flavor: Flavor = request.param
    stack = static_stack("view")
    root = tmp_path_factory.mktemp(f"sign-in-{flavor.name}")
    path = root / "authentication-config.yaml"
    path.write_text(rendered_authentication(flavor, stack, (pki / "ca.crt").read_text()))
    cluster = Cluster(
        flavor,
        root / "cluster",
        # The controller-manager aggregates the `view`, `edit` and `admin` ClusterRoles' rules.
        components=("etcd", "kube-apiserver", "kube-controller-manager"),
        ready_for_pods=False,
        apiserver_args=(f"--authentication-config={path}",),
        hosts={identity.hosts(stack)["dex"]: dex[0]},
    )
    try:
        cluster.start()
        for binding in identity.cluster_role_bindings(stack):
            cluster.client.create(binding)
        cluster.wait_for(
            "the view ClusterRole's rules aggregated",
            lambda: (cluster.client.get("rbac.authorization.k8s.io/v1", "ClusterRole", "view") or {}).get("rules"),
        )
        yield cluster
    finally:
        cluster.stop()


def _token(pki: Path, dex: tuple[str, dict[str, str]], client: str) -> str:
    address, secrets = dex
    status, answer = dex_check.password_grant(
        f"https://{address}/token",
        pki / "ca.crt",
        identity.hosts(static_stack("view"))["dex"],
        client,
        "admin@example.org",
        PASSWORD,
        secrets.get(client, ""),
    )
    assert status == 200, answer
    token: str = answer["id_token"]
    return token


def _who(cluster: Cluster, token: str) -> tuple[int, Any]:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    return cluster.client_for_token(token).request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)


@pytest.mark.parametrize("started", [TALOS, K3S], ids=["arda-1.34", "ainur-1.33"], indirect=True)
def test_the_api_server_takes_dexs_token_as_the_stack_binds_it(started: Cluster, pki: Path, dex: tuple[str, dict[str, str]]) -> None:
    token = _token(pki, dex, apiserver.KUBECTL_CLIENT)
    claims = dex_check.claims(token)
    assert (claims["iss"], claims["aud"]) == ("https://dex.iluvatar.home.arpa", "kubernetes")
    status, review = started.wait_for("the JWT authenticator to load Dex's keys", lambda: (s := _who(started, token))[0] == 201 and s, timeout=60)
    user = review["status"]["userInfo"]
    assert user["username"] == "oidc:admin@example.org"
    assert {"oidc:admins", "system:authenticated"} <= set(user["groups"])
    client = started.client_for_token(token)
    # `admins` is bound to view: reading is allowed, writing is not.
    assert client.request("GET", "/api/v1/namespaces/default/configmaps")[0] == 200
    status, answer = client.request(
        "POST", "/api/v1/namespaces/default/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    )
    assert status == 403 and "oidc:admin@example.org" in answer["message"]


@pytest.mark.parametrize("started", [TALOS, K3S], ids=["arda-1.34", "ainur-1.33"], indirect=True)
def test_a_token_for_another_audience_is_refused(started: Cluster, pki: Path, dex: tuple[str, dict[str, str]]) -> None:
    good = _token(pki, dex, apiserver.KUBECTL_CLIENT)
    started.wait_for("the JWT authenticator to load Dex's keys", lambda: _who(started, good)[0] == 201, timeout=60)
    # Argo CD's client: a real Dex token, for Argo CD, not for the API server.
    other = _token(pki, dex, identity.ARGOCD_CLIENTS["arda"])
    assert dex_check.claims(other)["aud"] == "argocd-arda"
    assert _who(started, other)[0] == 401


def test_headlamps_audience_is_accepted_only_with_headlamp() -> None:
    stack = static_stack("view")
    assert apiserver.audiences(stack) == ["kubernetes", "headlamp"]
    sf = read_stack_file(HOMELAB)
    raw = without(dict(sf.config), ("iluvatar:remoteAccess",))
    raw["iluvatar:identity"] = {k: v for k, v in raw["iluvatar:identity"].items() if k != "headlamp"}
    assert apiserver.audiences(parse_stack(raw, sf.secret_keys)) == ["kubernetes"]
    config = yaml.safe_load(rendered_authentication(TALOS, stack, "CA"))
    assert config["apiVersion"] == "apiserver.config.k8s.io/v1" and config["jwt"][0]["issuer"]["audienceMatchPolicy"] == "MatchAny"
    # The Ainur's k3s v1.35.8+k3s1 reads v1 too (GA in 1.34); an older k3s gets v1beta1, which no API server here runs now
    # (the test control plane is 1.35 for both clusters), so that branch is held by the plan alone.
    assert yaml.safe_load(rendered_authentication(K3S, stack, "CA"))["apiVersion"] == "apiserver.config.k8s.io/v1"
    assert apiserver.authentication_config(stack, (1, 33), "CA")["apiVersion"] == "apiserver.config.k8s.io/v1beta1"
