"""The images chart values pin (`arda.cilium.values`, `gitops.argocd.values`), against the release the chart ships.

A chart's manifests, its CRDs and the values Iluvatar gives it are written for the release of its own components the
chart ships (its appVersion): an image key that pins one of them to another release runs a binary none of them were
written for, gets round the rules on the chart's version (`arda.cilium.version` 1.18 or later, a minor at a time), and
leaves `iluvatar versions` and the summary naming the chart's release, not what runs. So such a tag is refused, at the
key that sets it; a mirror (another repository with the chart's own tag) is accepted, as the Talos rule on
Kubernetes' component images accepts one (stacks.rules._component_images). An image the chart pins of another
project's release (Cilium's Envoy, Hubble UI, certgen; Argo CD's Dex, Redis) at another tag is warned of: a newer one
may be a security fix of its line. So is a digest of Cilium's own image beside the chart's tag (validate cannot tell
its release, and it stays when the chart moves), and a new tag beside the chart's own digest (the runtime pulls by the
digest, so the tag is a label only).

What each chart ships is kept here as data (`chart_images/<chart>-<version>.json`: its appVersion, and each image's
defaults from its values.yaml), which tests/stacks/test_chart_images.py holds equal to the pinned chart's own files,
and which holds the tables below to every image the chart's templates read. For a chart version with no data kept,
Cilium's rule still holds (its own images are tagged `v<chart version>`, values.yaml `image.tag` at each release);
Argo CD's appVersion cannot be told from its chart's version, so a tag of its own image is warned of there.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks import chart_values, pins
from stacks.errors import Problem, show
from stacks.model import Arda, GitOps
from stacks.rules import CILIUM_OLDEST

DATA = Path(__file__).resolve().parent / "chart_images"
# The charts whose images are kept here, by chart and version (`<chart>-<version>.json`).
KEPT = {("cilium", pins.CHARTS["cilium"]), ("argo-cd", pins.CHARTS["argo-cd"])}


@dataclass(frozen=True)
class ChartImages:
    """A chart's appVersion and each image's defaults in its values.yaml, by the image's key path (`operator.image`)."""

    chart: str
    version: str
    app_version: str
    images: Mapping[str, Mapping[str, Any]]


@functools.cache
def chart_images(chart: str, version: str) -> ChartImages | None:
    """The chart's images kept here at that version, or None."""
    if (chart, version) not in KEPT:
        return None
    data = json.loads((DATA / f"{chart}-{version}.json").read_text())
    return ChartImages(chart, version, data["appVersion"], data["images"])


# Cilium 1.18.4's images, by the key the chart reads each from. Its own components are built from Cilium's tree at the
# chart's release and tagged with it (values.yaml:216-226 image, 1504-1513 hubble.relay.image, 2842-2856
# operator.image, 3151-3160 preflight.image, 3320-3329 clustermesh.apiserver.image, each tag "v1.18.4"): the agent,
# the operator (templates/cilium-operator/_helpers.tpl:28-37), Hubble Relay, the preflight check and the clustermesh
# API server, whose image runs its etcd and kvstoremesh too (templates/clustermesh-apiserver/deployment.yaml:66,120-121,
# 187, 287).
CILIUM_OWN: dict[str, str] = {
    "image": "the agent",
    "operator.image": "the operator",
    "hubble.relay.image": "Hubble Relay",
    "preflight.image": "the preflight check",
    "clustermesh.apiserver.image": "the clustermesh API server (its etcd and kvstoremesh with it)",
}
# The images Cilium 1.18.4 pins of releases of their own: cilium-envoy's line (values.yaml:2466-2475, 3164-3173, tag
# v1.34.10-...), certgen's (1166-1174, v0.2.4), Hubble UI's (1763-1771, 1798-1806, v0.13.3), the node init's
# startup-script (3065-3073), and SPIRE's with busybox (3866-3874, 3921-3929 and initImage beside them).
CILIUM_OTHERS: dict[str, str] = {
    "envoy.image": "the Envoy proxy (cilium-envoy)",
    "preflight.envoy.image": "the preflight check's Envoy (cilium-envoy)",
    "certgen.image": "certgen",
    "hubble.ui.backend.image": "Hubble UI's backend",
    "hubble.ui.frontend.image": "Hubble UI's frontend",
    "nodeinit.image": "the node init (startup-script)",
    "authentication.mutual.spire.install.initImage": "SPIRE's init container (busybox)",
    "authentication.mutual.spire.install.agent.image": "the SPIRE agent",
    "authentication.mutual.spire.install.server.image": "the SPIRE server",
}
# SPIRE's two images may be a whole reference as text (templates/spire/server/statefulset.yaml:68-69,
# spire/agent/daemonset.yaml:64-65); every other is a mapping the chart's cilium.image helper composes.
CILIUM_TEXT = {"authentication.mutual.spire.install.agent.image", "authentication.mutual.spire.install.server.image"}
# The keys of an image's mapping that make its reference (templates/_helpers.tpl:30-38; the operator's digest is its
# cloud's, templates/cilium-operator/_helpers.tpl:13-23, and its name takes the cloud and the suffix, :28-37).
CILIUM_KEYS = ("override", "repository", "tag", "digest", "genericDigest", "awsDigest", "azureDigest", "alibabacloudDigest", "useDigest", "suffix")

# Argo CD 10.8.0's images, by the key the chart reads each from. Its own components all run Argo CD's one image,
# `<repository or global.image.repository>:<tag or global.image.tag or the chart's appVersion>` (templates/_common.tpl:
# 37-39 argo-cd.defaultTag; argocd-server/deployment.yaml:72, argocd-application-controller/statefulset.yaml:79 and
# deployment.yaml:78, argocd-repo-server/deployment.yaml:78,438, argocd-applicationset/deployment.yaml:67,
# argocd-notifications/deployment.yaml:68, argocd-commit-server/deployment.yaml:66, redis-secret-init/job.yaml:46,
# dex/deployment.yaml:192 for Dex's init container, Argo CD's copyutil).
ARGOCD_OWN: dict[str, str] = {
    "global.image": "every Argo CD component that sets no image of its own",
    "server.image": "the API server",
    "controller.image": "the application controller",
    "repoServer.image": "the repo server",
    "applicationSet.image": "the ApplicationSet controller",
    "notifications.image": "the notifications controller",
    "commitServer.image": "the commit server",
    "redisSecretInit.image": "the Redis secret init job",
    "dex.initImage": "Dex's init container (Argo CD's copyutil)",
}
# The images Argo CD 10.8.0 pins of other projects, each `<repository>:<tag>`: Dex (templates/dex/deployment.yaml:74,
# values.yaml dex.image), Redis and its exporter (redis/deployment.yaml:64,132), the server's extension installer
# (argocd-server/deployment.yaml:478), and the redis-ha subchart's Redis and HAProxy (charts/redis-ha/templates/
# redis-ha-statefulset.yaml:131, redis-haproxy-deployment.yaml:110).
ARGOCD_OTHERS: dict[str, str] = {
    "dex.image": "Dex",
    "redis.image": "Redis",
    "redis.exporter.image": "Redis's metrics exporter",
    "server.extensions.image": "the server's extension installer",
    "redis-ha.image": "redis-ha's Redis",
    "redis-ha.haproxy.image": "redis-ha's HAProxy",
}

# An image reference as a container runtime reads it: a name, an optional tag, an optional digest.
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")


@dataclass(frozen=True)
class Reference:
    image: str
    tag: str | None
    digest: str | None
    valid: bool


def reference(image: str) -> Reference:
    """`image`'s tag and digest, and whether it is a reference at all (`repo:v1:v2` is not)."""
    name, at, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag: str | None = None
    valid = bool(name) and (not at or _DIGEST.match(digest) is not None)
    if ":" in last:
        name, _, tag = name.rpartition(":")
        valid = valid and bool(name) and _TAG.match(tag) is not None and ":" not in name.rsplit("/", 1)[-1]
    return Reference(image, tag, digest if at else None, valid)


def _at(values: Mapping[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _text(value: Any) -> str:
    """A value as Helm's templates print it: null and false as nothing."""
    return "" if value is None or value is False else str(value)


def _cilium_image(block: Mapping[str, Any], operator: bool, values: Mapping[str, Any]) -> str:
    """The reference Cilium's chart writes for an image's keys (templates/_helpers.tpl:30-38, the operator's
    templates/cilium-operator/_helpers.tpl:13-37)."""
    if _text(block.get("override")):
        return _text(block.get("override"))
    tag = f":{_text(block.get('tag'))}" if _text(block.get("tag")) else ""
    if not operator:
        digest = f"@{_text(block.get('digest'))}" if block.get("useDigest") else ""
        return f"{_text(block.get('repository'))}{tag}{digest}"
    cloud = next((c for c, key in (("aws", "eni"), ("azure", "azure"), ("alibabacloud", "alibabacloud")) if _at(values, f"{key}.enabled")), "generic")
    digest = f"@{_text(block.get(f'{cloud}Digest'))}" if block.get("useDigest") else ""
    return f"{_text(block.get('repository'))}-{cloud}{_text(block.get('suffix'))}{tag}{digest}"


def _written_key(block: Mapping[str, Any]) -> str:
    """The key of a user's image mapping that decides its release: override, a repository that carries a tag or a
    digest, else tag (the digests beside it only where the tag is the chart's)."""
    if _text(block.get("override")):
        return "override"
    repository = _text(block.get("repository"))
    if "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
        return "repository"
    if "tag" in block:
        return "tag"
    return next(k for k in CILIUM_KEYS if k in block)


@dataclass(frozen=True)
class Finding:
    """A refusal (refused) or a warning, at a config path."""

    refused: bool
    problem: Problem


def _cilium(arda: Arda) -> Iterator[Finding]:
    version = arda.cilium.version
    kept = chart_images("cilium", version)
    pinned = chart_images("cilium", pins.CHARTS["cilium"])
    assert pinned is not None  # the pinned chart's are always kept (the test holds it)
    own = f"v{version}"
    values = arda.cilium.values
    base = "iluvatar:arda.cilium.values"
    schema = chart_values.chart_schema("cilium", version) is not None
    for path in (*CILIUM_OWN, *CILIUM_OTHERS):
        given = _at(values, path)
        is_own = path in CILIUM_OWN
        defaults: dict[str, Any] = {}
        if isinstance(given, str) and path in CILIUM_TEXT:
            image, key, written = given, path, given
        elif isinstance(given, Mapping) and any(k in given for k in CILIUM_KEYS):
            # A key set to null drops the chart's default (Helm's coalescing); a chart kept here gives the defaults, else
            # the pinned chart's shape with the chart's own tag and no digest.
            defaults = (
                dict(kept.images[path])
                if kept is not None
                else {**pinned.images[path], "tag": own if is_own else "", "digest": "", "useDigest": False}
            )
            image = _cilium_image({**defaults, **{k: given[k] for k in CILIUM_KEYS if k in given}}, path == "operator.image", values)
            key = f"{path}.{_written_key(given)}"
            written = given[_written_key(given)]
            if written is not None and not isinstance(written, str) and key.rsplit(".", 1)[-1] in ("override", "repository", "tag") and schema:
                continue  # not text: the chart's values schema refuses it (stacks.chart_values), once
        else:
            continue
        ref = reference(image)
        # The fix: remove the key that decides the release, or every key of the image the user wrote where what the
        # others make without it is no better (a repository emptied of its tag beside `tag: ""`).
        removed = [key]
        if isinstance(given, Mapping):
            rest = {**defaults, **{k: given[k] for k in CILIUM_KEYS if k in given and f"{path}.{k}" != key}}
            kept_ref = reference(_cilium_image(rest, path == "operator.image", values))
            if not kept_ref.valid or (is_own and kept_ref.tag != own):
                removed = [f"{path}.{k}" for k in CILIUM_KEYS if k in given]
        default_block = kept.images[path] if kept is not None else None
        default_image = (
            _cilium_image(default_block, path == "operator.image", values)
            if default_block is not None
            else _cilium_image({**pinned.images[path], "tag": own, "digest": "", "useDigest": False}, path == "operator.image", values)
        )
        component = CILIUM_OWN.get(path) or CILIUM_OTHERS[path]
        remove = f"remove {', '.join(removed)} from arda.cilium.values (the chart then runs {default_image})"
        if not ref.valid:
            yield Finding(True, _invalid(f"{base}.{key}", written, f"Cilium's chart writes the image of {component} as {image}", remove))
        elif is_own and ref.tag != own:
            said = _said(written, image, ref, key.endswith(".tag"), own)
            yield Finding(
                True,
                Problem(
                    f"{base}.{key}",
                    f"{said} Cilium {version}, which arda.cilium.version's chart ships (its appVersion): {component} would run "
                    "a binary the chart's manifests and Iluvatar's values are not written for, round the rules on "
                    f"arda.cilium.version ({'.'.join(map(str, CILIUM_OLDEST))} or later for the cilium.io/v2 CiliumLoadBalancerIPPool, one minor at a time on "
                    f"upgrade), while `iluvatar versions` and the summary say {version}; {remove}; to run another release, set "
                    f"arda.cilium.version to the chart that ships it; for a mirror, give its image the tag {own}",
                ),
            )
        elif is_own and ref.digest is not None and key.rsplit(".", 1)[-1] not in ("override", "repository", "tag"):
            # A digest of the user's beside the chart's own tag: the digest decides what runs, and validate cannot tell
            # its release. It stays when arda.cilium.version moves, and would then run this release under the next
            # chart's tag, which the rule above reads as right; a tag written beside it is refused at the next chart.
            yield Finding(
                False,
                Problem(
                    f"{base}.{key}",
                    f"{show(written)} makes {component} run {image}: a container runtime pulls by the digest, whose release "
                    f"validate cannot tell, and the tag is the chart's, so when arda.cilium.version moves the digest stays and "
                    f"runs this release under the next chart's tag; write {path}.tag: {own} beside it (then the next chart "
                    f"version refuses the pair until both move), or {remove}",
                ),
            )
        elif (
            not is_own
            and default_block is not None
            and ref.tag != reference(default_image).tag
            and ref.digest is not None
            and ref.digest == reference(default_image).digest
        ):
            # The chart's digest stays beside the new tag (useDigest true, its default here): a runtime pulls by the digest
            # and never reads the tag, so the chart's release still runs under a tag that says another.
            pinned_tag = reference(default_image).tag or ""
            yield Finding(
                False,
                Problem(
                    f"{base}.{key}",
                    f"{show(written)} is not {pinned_tag}, the tag Cilium {version}'s chart pins for {component}, but the chart's "
                    f"digest of {pinned_tag} stays beside it (useDigest true) and a container runtime pulls by the digest, so "
                    f"{component} still runs {pinned_tag} under a tag that says {ref.tag}; to run {ref.tag}, set "
                    f"{path}.useDigest: false beside it (or its own digest in {path}.digest); else {remove}",
                ),
            )
        elif not is_own and default_block is not None and ref.tag != reference(default_image).tag:
            yield Finding(
                False, _other(f"{base}.{key}", written, image, ref, component, f"Cilium {version}", reference(default_image).tag or "", remove)
            )
        elif not is_own and default_block is None:
            yield Finding(
                False,
                _unknown_other(
                    f"{base}.{key}",
                    written,
                    component,
                    f"Cilium's chart {version}",
                    f"helm show values cilium/cilium --version {version}",
                    f"remove {key} from arda.cilium.values",
                ),
            )


def _said(written: Any, image: str, ref: Reference, is_tag: bool, own: str) -> str:
    """The opening of a refusal: the value as written, and the release it names."""
    if ref.tag is None:
        return (
            f"{show(written)} makes the image {image}, which has no tag (a bare name is :latest, a digest names no release), "
            f"so it is not {own}, the tag of"
        )
    if is_tag:
        return f"{show(written)} is not {own}, the tag of"
    return f"{show(written)} makes the image {image}, tag {ref.tag}, not {own}, the tag of"


def _invalid(path: str, written: Any, how: str, remove: str) -> Problem:
    return Problem(
        path, f"{show(written)} is no image reference a container runtime can pull: {how}, and the pod would fail with InvalidImageName; {remove}"
    )


def _other(path: str, written: Any, image: str, ref: Reference, component: str, chart: str, pinned_tag: str, remove: str) -> Problem:
    return Problem(
        path,
        f"{show(written)} runs {component} at {ref.tag if ref.tag is not None else 'no tag (' + image + ')'}, not {pinned_tag}, "
        f"the tag {chart}'s chart pins for it from a release line of its own, which the chart's manifests are written for: "
        f"right for a security fix of that line, but the chart's pin follows each chart version and this tag stays at every "
        f"one; else {remove}",
    )


def _unknown_other(path: str, written: Any, component: str, chart: str, how: str, remove: str) -> Problem:
    return Problem(
        path,
        f"{show(written)} pins the image of {component}, and validate keeps no record of the tag {chart} pins for it: check it "
        f"against the chart's own (`{how}`), since the chart's pin follows each chart version and this tag stays at every "
        f"one; or {remove}",
    )


def _argocd(gitops: GitOps) -> Iterator[Finding]:
    version = gitops.argocd.version
    kept = chart_images("argo-cd", version)
    values = gitops.argocd.values
    base = "iluvatar:gitops.argocd.values"
    default_repository = "quay.io/argoproj/argocd"
    if kept is not None:
        default_repository = _text(kept.images["global.image"].get("repository")) or default_repository
    for path in (*ARGOCD_OWN, *ARGOCD_OTHERS):
        given = _at(values, path)
        if not isinstance(given, Mapping):
            continue
        is_own = path in ARGOCD_OWN
        component = ARGOCD_OWN.get(path) or ARGOCD_OTHERS[path]
        default = kept.images[path] if kept is not None else {}
        repository = _text(given.get("repository", default.get("repository"))) or (
            _text(_at(values, "global.image.repository")) or default_repository if is_own else ""
        )
        tag = _text(given.get("tag"))
        # The chart writes `<repository>:<tag>` (the templates above): a repository that carries a tag or a digest
        # makes no reference at all.
        if "repository" in given and ("@" in repository or ":" in repository.rsplit("/", 1)[-1]):
            chart_tag = kept.app_version if kept is not None and is_own else _text(default.get("tag")) or "<tag>"
            image = f"{repository}:{tag or chart_tag}"
            fallback = (_text(_at(values, "global.image.repository")) if path != "global.image" else "") or default_repository
            runs = f"{fallback if is_own else _text(default.get('repository'))}:{tag or chart_tag}"
            yield Finding(
                True,
                _invalid(
                    f"{base}.{path}.repository",
                    given["repository"],
                    f"Argo CD's chart appends :<tag> to it, so {component} gets {image}",
                    f"remove {path}.repository from gitops.argocd.values (the chart then runs {runs}); for a mirror, write its "
                    "repository without the tag",
                ),
            )
            continue
        if not tag:
            continue
        ref = reference(f"{repository or 'image'}:{tag}")
        key = f"{path}.tag"
        remove = f"remove {key} from gitops.argocd.values"
        if not ref.valid:
            yield Finding(True, _invalid(f"{base}.{key}", given["tag"], f"Argo CD's chart writes the image of {component} as {ref.image}", remove))
        elif is_own and kept is not None and ref.tag != kept.app_version:
            app = kept.app_version
            yield Finding(
                True,
                Problem(
                    f"{base}.{key}",
                    f"{show(given['tag'])} is not {app}, the Argo CD that gitops.argocd.version's chart {version} ships (its "
                    f"appVersion): {component} would run a release the chart's manifests and CRDs and Iluvatar's values are not "
                    f"written for, while `iluvatar versions` and the summary say chart {version}; {remove} (the chart then runs "
                    f"{repository}:{app}); to run another Argo CD, set "
                    f"gitops.argocd.version to the chart that ships it; for a mirror, set only its repository, or give it the tag {app}",
                ),
            )
        elif is_own and kept is None:
            yield Finding(
                False,
                Problem(
                    f"{base}.{key}",
                    f"{show(given['tag'])} pins {component} to an Argo CD release, and validate keeps no record of the one "
                    f"gitops.argocd.version's chart {version} ships: if it is not that chart's appVersion (`helm show chart "
                    f"argo/argo-cd --version {version}`), it runs a release the chart's manifests are not written for; remove {key} "
                    "from gitops.argocd.values to run the chart's own",
                ),
            )
        elif not is_own and kept is not None and ref.tag != _text(default.get("tag")):
            yield Finding(
                False, _other(f"{base}.{key}", given["tag"], ref.image, ref, component, f"Argo CD {version}", _text(default.get("tag")), remove)
            )
        elif not is_own and kept is None:
            yield Finding(
                False,
                _unknown_other(
                    f"{base}.{key}",
                    given["tag"],
                    component,
                    f"Argo CD's chart {version}",
                    f"helm show values argo/argo-cd --version {version}",
                    remove,
                ),
            )


def findings(arda: Arda | None, gitops: GitOps | None) -> list[Finding]:
    out: list[Finding] = []
    if arda is not None:
        out += _cilium(arda)
    if gitops is not None:
        out += _argocd(gitops)
    return out


def check(arda: Arda | None, gitops: GitOps | None) -> list[Problem]:
    """An image of a chart's own components pinned to another release than the chart ships, or no image at all."""
    return [f.problem for f in findings(arda, gitops) if f.refused]


def doubts(arda: Arda | None, gitops: GitOps | None) -> list[Problem]:
    """An image of another project's the chart pins, at another tag; an Argo CD tag under a chart with no data kept."""
    return [f.problem for f in findings(arda, gitops) if not f.refused]
