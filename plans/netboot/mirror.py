"""The Git mirror on the Ainur: a copy of the GitOps repository served read-only over git://."""

from __future__ import annotations

from typing import Any

from plans import gitops, netpol, storage
from plans.netboot.base import NAMESPACE
from plans.netboot.pods import _labels, _meta, _single_pod
from stacks.model import StackConfig


def git_mirror_manifests(stack: StackConfig) -> list[dict[str, Any]]:
    """A mirror of the GitOps repo, served read-only over git:// on its own kube-vip address.

    `git daemon` serves it: Argo CD lists a repository's refs with go-git, which speaks git's
    smart protocols only, so the static files of the dumb HTTP protocol would not do. The image is
    Argo CD's own (plans.gitops.ARGOCD_IMAGE), pulled for the seed anyway, which ships git with its
    daemon and ssh. A private or SSH repository is cloned with the credential in the
    `git-mirror-credentials` Secret (components.gitops); what the mirror serves, it serves to the LAN.
    """
    assert stack.ainur is not None
    mirror = stack.ainur.git_mirror
    if mirror is None:
        return []
    labels = _labels("git-mirror")
    base = gitops.MIRROR_BASE
    credential = gitops.mirror_credential_kind(stack)
    loop = gitops.mirror_script(gitops.mirror_source(stack), base, mirror.interval_minutes * 60, credential)
    # On Longhorn when the Pis run it: the copy is replicated, so the mirror starts on any Pi when its
    # own dies (a local-path volume would pin it to one). A claim of its own name: its class cannot change.
    volume_class = storage.git_mirror_class(stack)
    claim = "git-mirror" if volume_class == "local-path" else f"git-mirror-{volume_class}"
    mounts: list[dict[str, Any]] = [{"name": "git", "mountPath": base}]
    volumes: list[dict[str, Any]] = [{"name": "git", "persistentVolumeClaim": {"claimName": claim}}]
    if credential is not None:
        mounts.append({"name": "credentials", "mountPath": gitops.CREDENTIALS_DIR, "readOnly": True})
        volumes.append({"name": "credentials", "secret": {"secretName": gitops.MIRROR_CREDENTIALS, "defaultMode": 0o400}})
    pod = {
        # As root, as the mirror always ran: on a local-path (hostPath) volume fsGroup does not
        # apply, and the copy already there is root's.
        "securityContext": {"runAsUser": 0, "runAsGroup": 0},
        "containers": [
            {"name": "mirror", "image": gitops.ARGOCD_IMAGE, "command": ["sh", "-c", loop], "volumeMounts": mounts},
            {
                "name": "daemon",
                "image": gitops.ARGOCD_IMAGE,
                "command": gitops.mirror_daemon_command(base),
                "ports": [{"name": "git", "containerPort": gitops.MIRROR_PORT, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": "git"}, "periodSeconds": 10},
                "volumeMounts": [{"name": "git", "mountPath": base, "readOnly": True}],
            },
        ],
        "volumes": volumes,
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(claim, labels),
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": volume_class, "resources": {"requests": {"storage": "2Gi"}}},
        },
        _single_pod("git-mirror", labels, pod),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**_meta("git-mirror", labels), "annotations": {"kube-vip.io/loadbalancerIPs": str(mirror.ip)}},
            # Local: the readers' own addresses reach the pod, which its policy admits by address; with Cluster,
            # kube-proxy on the Pi that holds the address would masquerade them to its own (plans.netpol). No NodePort:
            # a pod dialing one on another Pi would arrive from its own Pi's address.
            "spec": netpol.load_balancer(
                [{"name": "git", "port": gitops.MIRROR_PORT, "targetPort": "git", "protocol": "TCP"}],
                externalTrafficPolicy="Local",
                selector=labels,
            ),
        },
        mirror_network_policy(stack),
    ]


# The pods of the Ainur's Argo CD that read Git: its repo server (the argo-cd chart's `nameOverride: argocd`). It is the
# only one that clones: the ApplicationSet controller's git generator asks the repo server for the directories and files
# (applicationset/services/repo_service.go:29-49, GetGitDirectories and GetGitFiles over gRPC; the controller and the
# server likewise ask it, server/repository/repository.go:775-786, testRepo), Argo CD v3.5.1's source, the nearest tag
# to the pinned image's v3.5.2. The chart's repo-server policy admits the ApplicationSet controller.
ARGOCD_REPO_SERVER = "argocd-repo-server"


def mirror_network_policy(stack: StackConfig) -> dict[str, Any]:
    """The mirror admits git:// from its readers and no one else: the Ainur's Argo CD (its repo server, through the
    in-cluster Service), Arda's (masqueraded by Cilium to its machine's address) and the LAN's clients it serves
    (docs/layers/gitops.md): `network.lan` less the Pis' own addresses, which stand for any pod of the Pi
    (plans.netpol.lan_clients). Another pod of the Ainur is none of these, by its pod address, through the Service, or
    masqueraded to its Pi's address. Nor is a host process of another Pi: it arrives from its Pi's flannel address, and
    no reader of the mirror runs on a Pi's host network (the Ainur's Argo CD runs as pods)."""
    machines = [f"{n.ip}/32" for n in stack.arda_nodes if n.ip not in stack.network.lan]
    return netpol.allow(
        "git-mirror",
        NAMESPACE,
        _labels("git-mirror"),
        [netpol.port(gitops.MIRROR_PORT)],
        [netpol.pods(ARGOCD_REPO_SERVER, gitops.NAMESPACE), netpol.lan_clients(stack), *(netpol.addresses(m) for m in machines)],
        **_labels("git-mirror"),
    )
