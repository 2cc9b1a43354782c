"""GitOps config: the repository Argo CD reads, checked the way Argo CD itself will read it.

`iluvatar:gitops` names the GitOps repository (`repoUrl`, `revision`), where the apps live in it
(`appsPath`, and `ainurPath` for the Ainur's own add-ons), how to reach a private one (the secret
`iluvatar:gitopsToken` for https, `iluvatar:gitopsSshPrivateKey` for SSH), which app categories
exist beyond the defaults and which of them Argo CD self-heals. The model lives in
`stacks.model` (`GitOps`); this module holds the field checks it uses and the rules that relate
it to the rest of the stack, each naming its config path.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stacks.categories import DEFAULT_CATEGORIES, known_categories
from stacks.errors import Problem

if TYPE_CHECKING:
    from stacks.model import Ainur, GitOps

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

# Argo CD's own test for an SSH repository URL (util/git.IsSSHURL): a user before an `@`.
_ARGO_SSH = re.compile(r"^(ssh://)?([^/:]*?)@[^@]+$")
_SCP = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/\s].*)$")
_SSH = re.compile(r"^ssh://(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+)(:(?P<port>\d{1,5}))?/(?P<path>\S+)$")
_HTTPS = re.compile(r"^https://(?P<host>[A-Za-z0-9.-]+)(:(?P<port>\d{1,5}))?/(?P<path>\S+)$")
# A branch, tag or commit as git accepts it in a refspec (git check-ref-format, simplified to what a user types).
_REVISION = re.compile(r"^(?!/)(?!.*(\.\.|//|@\{|\.lock$|/\.|\.$|/$))[A-Za-z0-9._/+-]+$")


def _show(value: object) -> str:
    """A value as the user wrote it (stacks.model.show, which this module cannot import)."""
    if isinstance(value, str):
        return value if value.strip() else repr(value)
    return repr(value)


@dataclass(frozen=True)
class RepoUrl:
    """A repository URL as Argo CD will use it: https, or SSH (scp-like `git@host:path` or `ssh://`)."""

    url: str
    scheme: str  # "https" or "ssh"
    host: str
    port: int | None

    @property
    def known_hosts_name(self) -> str:
        """The host as a known_hosts line names it (`[host]:port` off port 22)."""
        return self.host if self.port in (None, 22) else f"[{self.host}]:{self.port}"


def parse_repo_url(value: object) -> RepoUrl:
    """The repository URL, or ValueError saying why Argo CD could not use it."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{_show(value)} is not a repository URL (e.g. https://github.com/you/homelab.git or git@github.com:you/homelab.git)")
    url = value.strip()
    https = _HTTPS.match(url)
    if https:
        port = int(https["port"]) if https["port"] else None
        return RepoUrl(url, "https", https["host"].lower(), port)
    ssh = _SSH.match(url) or _SCP.match(url)
    if ssh and _ARGO_SSH.match(url):
        port = int(ssh["port"]) if "port" in ssh.groupdict() and ssh["port"] else None
        return RepoUrl(url, "ssh", ssh["host"].lower(), port)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "ssh":
        raise ValueError(f"{url} has no user: Argo CD reads an SSH URL only with one (e.g. ssh://git@github.com/you/homelab.git)")
    if scheme in ("http", "git", "file"):
        raise ValueError(
            f"{url} uses {scheme}://; Argo CD is given only https:// or SSH repositories here "
            "(e.g. https://github.com/you/homelab.git or git@github.com:you/homelab.git)"
        )
    raise ValueError(f"{url} is not an https:// or SSH repository URL (e.g. https://github.com/you/homelab.git or git@github.com:you/homelab.git)")


def check_repo_url(value: object) -> object:
    parse_repo_url(value)
    return value.strip() if isinstance(value, str) else value


def check_revision(value: object) -> object:
    if not isinstance(value, str) or not _REVISION.match(value):
        raise ValueError(f"{_show(value)} is not a branch, tag or commit git accepts (e.g. main, v1.2.0 or HEAD)")
    return value


def normalise_repo_path(value: object) -> object:
    """A folder inside the repository, as a clean relative path (`.` is the repository's root).

    It may not leave the repository, be absolute, hold glob characters (the generator's path is a
    glob) or pass through a hidden folder (Argo CD's repo-server never lists those).
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{_show(value)} is not a folder of the repository (e.g. apps, or kubernetes/apps)")
    raw = value.strip()
    if raw.startswith("/"):
        raise ValueError(f"{raw} is absolute; give a folder relative to the repository's root (e.g. apps)")
    clean = posixpath.normpath(raw)
    if clean == ".." or clean.startswith("../"):
        raise ValueError(f"{raw} leaves the repository (it resolves to {clean})")
    if re.search(r"[*?\[\]{}\\]", clean):
        raise ValueError(f"{raw} has a glob character; Argo CD's Git generator would read it as a pattern")
    hidden = next((part for part in clean.split("/") if part.startswith(".") and part != "."), None)
    if hidden is not None:
        raise ValueError(f"{raw} goes through the hidden folder {hidden}, which Argo CD's repo-server never lists")
    return clean


def check_known_host(value: object) -> object:
    if not isinstance(value, str) or len(value.split()) < 3 or value.lstrip().startswith("#"):
        raise ValueError(f"{_show(value)} is not a known_hosts line (host key-type key, e.g. the output of `ssh-keyscan git.example.com`)")
    return value.strip()


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


def check(gitops: GitOps | None, ainur: Ainur | None, secrets: Collection[str]) -> list[Problem]:
    """The rules relating `iluvatar:gitops` to its secrets, its categories and the Ainur's mirror.

    `gitops` and `ainur` are None when absent or broken; `secrets` holds the secret keys present in
    the config (e.g. `gitopsToken`).
    """
    if gitops is None:
        return list(_without_gitops(ainur, secrets))
    return [*_credentials(gitops, secrets), *_categories(gitops), *_paths(gitops), *_mirror(gitops, ainur)]


def _without_gitops(ainur: Ainur | None, secrets: Collection[str]) -> Iterator[Problem]:
    for key in (TOKEN, SSH_KEY):
        if key in secrets:
            yield Problem(f"iluvatar:{key}", f"is set, but {GITOPS} is not; set {GITOPS}.repoUrl, or remove the secret")
    if ainur is not None and ainur.git_mirror is not None and ainur.git_mirror.url is None:
        yield Problem("iluvatar:ainur.gitMirror.url", f"is required without {GITOPS}: the mirror serves {GITOPS}.repoUrl when there is one")


def _credentials(gitops: GitOps, secrets: Collection[str]) -> Iterator[Problem]:
    repo = parse_repo_url(gitops.repo_url)
    token, key = f"iluvatar:{TOKEN}", f"iluvatar:{SSH_KEY}"
    if repo.scheme == "https":
        if gitops.private and TOKEN not in secrets:
            yield Problem(
                token, f"is required: {GITOPS}.private is true and {gitops.repo_url} is https; run `pulumi config set --secret {token} <token>`"
            )
        if TOKEN in secrets and not gitops.private:
            yield Problem(token, f"is set, but {GITOPS}.private is false; set private: true, or remove the token")
        if SSH_KEY in secrets:
            yield Problem(key, f"is set, but {gitops.repo_url} is https, which takes {token} instead")
    else:
        if SSH_KEY not in secrets:
            yield Problem(
                key,
                f"is required: {gitops.repo_url} is an SSH URL, and Argo CD reaches it only with a key; "
                f"run `pulumi config set --secret {key} < deploy_key` (a read-only deploy key)",
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
