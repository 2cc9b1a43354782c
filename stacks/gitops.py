"""GitOps config: the repository Argo CD reads, checked the way Argo CD itself will read it.

`iluvatar:gitops` names the GitOps repository (`repoUrl`, `revision`), where the apps live in it
(`appsPath`, and `ainurPath` for the Ainur's own add-ons), how to reach a private one (the secret
`iluvatar:gitopsToken` for https, `iluvatar:gitopsSshPrivateKey` for SSH), which app categories
exist beyond the defaults and which of them Argo CD self-heals. The model lives in
`stacks.model` (`GitOps`), its field checks in `stacks.repository` (re-exported here); this module
holds the rules that relate it to the rest of the stack, each naming its config path.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from stacks import pins
from stacks.categories import DEFAULT_CATEGORIES, known_categories
from stacks.data import on_arda
from stacks.errors import Problem, UnsetSecret
from stacks.model import Ainur, App, Arda, GitOps, Network, Node
from stacks.reach import Clients, unreachable
from stacks.repository import _ARGO_SSH as _ARGO_SSH
from stacks.repository import RepoUrl as RepoUrl
from stacks.repository import check_known_host as check_known_host
from stacks.repository import check_repo_url as check_repo_url
from stacks.repository import check_revision as check_revision
from stacks.repository import normalise_repo_path as normalise_repo_path
from stacks.repository import parse_repo_url as parse_repo_url
from stacks.storage import zone_addresses

GITOPS = "iluvatar:gitops"
TOKEN = "gitopsToken"  # noqa: S105 - the secret's config key, not a secret
SSH_KEY = "gitopsSshPrivateKey"

# Namespaces a category may not be: Kubernetes' own, and the ones Iluvatar's platform layers run in
# (a category namespace is created, labelled and owned by Pulumi, and Argo CD deploys into it).
RESERVED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease", "argocd", "netboot"})

# Hosts whose SSH keys the argo-cd chart ships (its `configs.ssh.knownHosts`); any other SSH host
# needs `gitops.sshKnownHosts`. A test keeps this in step with the pinned chart.
ARGOCD_KNOWN_SSH_HOSTS = frozenset(
    {"[ssh.github.com]:443", "bitbucket.org", "github.com", "gitlab.com", "ssh.dev.azure.com", "vs-ssh.visualstudio.com"}
)


def category_names(gitops: GitOps | None, registry: Collection[str] = ()) -> tuple[str, ...]:
    """Every app category of the stack: the defaults, the stack's own, those the app registry uses.

    This is the one union of categories: each becomes a folder of the GitOps repository, an
    ApplicationSet and a Pulumi-owned namespace. `registry` is the categories `iluvatar:apps` names.
    """
    extra = gitops.categories if gitops is not None else ()
    return known_categories([*extra, *registry])


def self_healed(gitops: GitOps, category: str) -> bool:
    """Whether Argo CD undoes hand edits to the apps of `category` (gitops.selfHeal)."""
    if isinstance(gitops.self_heal, bool):
        return gitops.self_heal
    return category in gitops.self_heal


def check(gitops: GitOps | None, ainur: Ainur | None, secrets: Collection[str], lab: Lab | None = None) -> list[Problem]:
    """The rules relating `iluvatar:gitops` to its secrets, its categories, the Ainur's mirror and Arda.

    `gitops` and `ainur` are None when absent or broken; `secrets` holds the secret keys present in
    the config (e.g. `gitopsToken`); `lab` what of the stack could hold the repository on Arda.
    """
    if gitops is None:
        return list(_without_gitops(ainur, secrets))
    return [
        *_reach(gitops, ainur, lab),
        *_credentials(gitops, secrets),
        *_categories(gitops),
        *_paths(gitops),
        *_mirror(gitops, ainur),
        *_argocd_version(gitops),
    ]


# The oldest argo-cd chart whose Redis takes the password of the argocd-redis Secret: from 6.10.0 on, its
# templates/redis/deployment.yaml:68-74 runs Redis with `--requirepass $(REDIS_PASSWORD)`, read from that Secret's key
# `auth` ("Enable Redis authentication in the default installation (GHSA-9766-5277-j5hr)", its Chart.yaml's changes at
# argo-cd-6.10.0, Argo CD v2.11.1). Iluvatar makes that Secret itself before the release (components.gitops); an older
# chart reads none of it, and runs Redis, the cache of every manifest Argo CD renders, with no password, guarded by the
# program's NetworkPolicies alone, which a Pi's host-network pods get past on the Ainur (docs/security.md). The floor is
# the password's, not that of every Redis key Iluvatar sets: `redisSecretInit.enabled` (plans.gitops.helm_values) is read
# from 6.11.0 on (argo-cd-6.11.0's templates/redis-secret-init/job.yaml:1, `if and .Values.redisSecretInit.enabled ...`;
# 6.10.0-6.10.2's is `if not .Values.externalRedis.host` alone), so under 6.10.0-6.10.2 the chart's secret-init hook
# job still runs, and finds the Secret made: the message claims nothing of that job.
ARGOCD_OLDEST = (6, 10, 0)


def _argocd_version(gitops: GitOps) -> Iterator[Problem]:
    version = gitops.argocd.version
    if tuple(int(x) for x in version.split(".")[:3]) >= ARGOCD_OLDEST:
        return
    oldest = ".".join(str(x) for x in ARGOCD_OLDEST)
    yield Problem(
        "iluvatar:gitops.argocd.version",
        f"{version} is older than argo-cd {oldest}, the first chart whose Redis requires the password Iluvatar gives it (the "
        "argocd-redis Secret, which Iluvatar makes before it installs the chart): under it Redis would run with no password, "
        "which the chart closed in 6.10.0 (GHSA-9766-5277-j5hr: a pod that reaches Redis could change the manifests Argo CD "
        f"applies), and it runs an Argo CD the values Iluvatar gives are not written for; write {pins.CHARTS['argo-cd']}, "
        "the release this Iluvatar installs and is checked with",
    )


@dataclass(frozen=True)
class Lab:
    """The parts of the stack a repository's host could be on Arda through: the apps, the LAN, the machines, Arda."""

    apps: Sequence[tuple[int, App]]
    network: Network | None
    nodes: Sequence[tuple[int, Node]]
    arda: Arda | None


def _reach(gitops: GitOps, ainur: Ainur | None, lab: Lab | None) -> Iterator[Problem]:
    # Argo CD on Arda and, with a mirror, the Git mirror on the Ainur (a pod of k3s, which resolves no Service of Arda's)
    # clone from the LAN side.
    mirror = ainur is not None and ainur.git_mirror is not None
    clients = Clients(
        "Argo CD on Arda" + (" and the Git mirror on the Ainur" if mirror else ""),
        "so nothing would sync",
        "give the Git server's LAN address or public name",
        service_name="the Git mirror runs on the Ainur, another cluster" if mirror else None,
    )
    urls = [(f"{GITOPS}.repoUrl", gitops.repo_url)]
    if ainur is not None and ainur.git_mirror is not None and ainur.git_mirror.url is not None:
        urls.append(("iluvatar:ainur.gitMirror.url", ainur.git_mirror.url))
    for path, url in urls:
        try:
            host = parse_repo_url(url).host
        except ValueError as err:  # an http:// or unparsable mirror URL, which its own field admits: said, not raised
            yield Problem(path, str(err))
            continue
        if (why := unreachable(host, clients)) is not None:
            yield Problem(path, f"{url}: {why}")
            continue
        if lab is None:
            continue
        # Argo CD deploys Arda's apps from this repository: one served by Arda (an app, a Service, a machine) has nothing
        # to serve it on bring-up, and goes with Arda in the disaster it should rebuild Arda from, as a backup would.
        try:
            address: IPv4Address | None = IPv4Address(host)
        except ValueError:
            address = zone_addresses(lab.nodes, lab.arda, ainur, lab.network).get(host)
        for what in on_arda(
            host, address, host if address is None or str(address) == host else f"{host} ({address})", lab.apps, lab.network, lab.nodes, lab.arda
        ):
            yield Problem(
                path,
                f"{url}: {what}, the cluster Argo CD deploys from this repository: on bring-up nothing serves it, so nothing "
                "would sync, and a disaster on Arda takes with it the repository that rebuilds Arda; keep it on a Git forge or "
                "a machine off Arda",
            )


def _without_gitops(ainur: Ainur | None, secrets: Collection[str]) -> Iterator[Problem]:
    for key in (TOKEN, SSH_KEY):
        if key in secrets:
            yield Problem(f"iluvatar:{key}", f"is set, but {GITOPS} is not; set {GITOPS}.repoUrl, or remove the secret")
    if ainur is not None and ainur.git_mirror is not None and ainur.git_mirror.url is None:
        yield Problem("iluvatar:ainur.gitMirror.url", f"is required without {GITOPS}: the mirror serves {GITOPS}.repoUrl when there is one")


# Azure DevOps has no deploy keys: an SSH key is a user's, added under the user's own SSH public keys and signing in as
# that user to every repository the user can reach (MicrosoftDocs/azure-devops-docs docs/repos/git/
# use-ssh-keys-to-authenticate.md at 03fdcb3, "Step 2: Add the public key to Azure DevOps": "Associate the public key ...
# with your user ID"; its keys are RSA, "Step 1", and "SSH keys stored in Azure DevOps expire after one year"). Read-only
# is then the user's access, not the key's.
_AZURE_SSH_HOSTS = frozenset({"ssh.dev.azure.com", "vs-ssh.visualstudio.com"})
_AZURE_KEY = (
    "run `pulumi config set --secret {key} < id_rsa` with the RSA key of an Azure DevOps user who can only read this "
    "repository (Azure DevOps has no deploy keys: a key added under a user's SSH public keys signs in as that user, to every "
    "repository the user reaches, and expires after a year)"
)


def _credentials(gitops: GitOps, secrets: Collection[str]) -> Iterator[Problem]:
    repo = parse_repo_url(gitops.repo_url)
    token, key = f"iluvatar:{TOKEN}", f"iluvatar:{SSH_KEY}"
    if repo.scheme == "https":
        if gitops.private and TOKEN not in secrets:
            yield UnsetSecret(
                token,
                f"is required: {GITOPS}.private is true and {gitops.repo_url} is https; run `pulumi config set --secret {token} <token>`",
                (token,),
            )
        if TOKEN in secrets and not gitops.private:
            yield Problem(token, f"is set, but {GITOPS}.private is false; set private: true, or remove the token")
        if SSH_KEY in secrets:
            yield Problem(key, f"is set, but {gitops.repo_url} is https, which takes {token} instead")
    else:
        if SSH_KEY not in secrets:
            yield UnsetSecret(
                key,
                f"is required: {gitops.repo_url} is an SSH URL, and Argo CD reaches it only with a key; "
                + (
                    _AZURE_KEY.format(key=key)
                    if repo.host in _AZURE_SSH_HOSTS
                    else f"run `pulumi config set --secret {key} < deploy_key` (a read-only deploy key)"
                ),
                (key,),
            )
        if TOKEN in secrets:
            yield Problem(token, f"is set, but {gitops.repo_url} is an SSH URL, which takes {key} instead")
        if repo.known_hosts_name not in ARGOCD_KNOWN_SSH_HOSTS:
            listed = {line.split()[0] for line in gitops.ssh_known_hosts}
            names = {name for entry in listed for name in entry.split(",")}
            if repo.known_hosts_name not in names:
                yield Problem(
                    f"{GITOPS}.sshKnownHosts",
                    f"has no key for {repo.known_hosts_name}, which Argo CD does not know; add the lines `ssh-keyscan "
                    f"{'-p ' + str(repo.port) + ' ' if repo.port not in (None, 22) else ''}{repo.host}` prints, after checking them",
                )
    if gitops.ssh_known_hosts and repo.scheme == "https":
        yield Problem(f"{GITOPS}.sshKnownHosts", f"is set, but {gitops.repo_url} is https; remove it")


def _categories(gitops: GitOps) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, category in enumerate(gitops.categories):
        path = f"{GITOPS}.categories[{i}]"
        if category in DEFAULT_CATEGORIES:
            yield Problem(path, f"{category} is already a default category; list only new ones (defaults: {', '.join(DEFAULT_CATEGORIES)})")
        elif category in seen:
            yield Problem(path, f"{category} is listed twice")
        elif category in RESERVED_NAMESPACES:
            yield Problem(
                path, f"{category} is a namespace Kubernetes or Iluvatar already uses; a category gets its own namespace, so pick another name"
            )
        seen.add(category)
    if not isinstance(gitops.self_heal, bool):
        known = category_names(gitops)
        for i, category in enumerate(gitops.self_heal):
            if category not in known:
                close = _closest(category, known)
                hint = f"; did you mean {close}?" if close else ""
                yield Problem(f"{GITOPS}.selfHeal[{i}]", f"{category} is not a known category{hint} (known: {', '.join(known)})")


def _paths(gitops: GitOps) -> Iterator[Problem]:
    apps, ainur = gitops.apps_path, gitops.ainur_path
    if apps == "." and ainur != ".":
        first = ainur.split("/")[0]
        if first in category_names(gitops):
            yield Problem(
                f"{GITOPS}.ainurPath", f"{ainur} is inside the category folder {first} (appsPath is the repository's root); pick another folder"
            )
    elif apps == ainur or ainur == "." or apps.startswith(ainur + "/") or ainur.startswith(apps + "/"):
        yield Problem(f"{GITOPS}.ainurPath", f"{ainur} overlaps appsPath {apps}: Arda's and the Ainur's apps need folders of their own")


def _mirror(gitops: GitOps, ainur: Ainur | None) -> Iterator[Problem]:
    if ainur is None or ainur.git_mirror is None or ainur.git_mirror.url is None:
        return
    if ainur.git_mirror.url != gitops.repo_url:
        yield Problem(
            "iluvatar:ainur.gitMirror.url",
            f"{ainur.git_mirror.url} is not {GITOPS}.repoUrl {gitops.repo_url}; the mirror serves the GitOps repository, so remove url",
        )


def _closest(word: str, choices: Collection[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None
