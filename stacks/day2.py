"""Day-2 rules: what a running cluster allows a version change to be, refused at preview with the key.

The program reads back what the last deployment ran (its own stack output `arda`, written by
`plans.rollout.state`) before the first resource is registered, and refuses a change no machine
could make: a Talos version Talos cannot upgrade a node to from the version it runs, a Kubernetes
version more than one minor ahead or behind what runs, Talos and Kubernetes moving in the
same run (upgrade Talos, then Kubernetes: each is rolled and checked machine by machine, and
one failure must name one cause), or Kubernetes moving in the run a control plane leaves the
inventory (it would keep the old API server while the kubelets move past it). What the last
deployment exported is what it knows: a Kubernetes upgrade that failed halfway leaves the old
version there, and setting the version back is refused by each machine's apply, against what the
machine runs (upgrader/README.md, `apply`). The Talos upgrade paths are machinery's own
(`compatibility.TalosVersion.UpgradeableFrom`); tests/stacks/test_day2.py asks machinery about every
pair this table decides. A Talos version two or more minors ahead of what runs is a path
(stacks.releases.talos_path): every machine rolled to each intermediate minor's newest release in
turn, then to the version asked for, in one run; where a minor needs a newer Kubernetes than runs,
the same run moves Kubernetes one minor at a time before that roll, to the stack's
`kubernetesVersion` in the end (stacks.releases.talos_path): each a step of its own in the chain.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stacks import encryption, releases, rules, storage, versions
from stacks import logs as logs_rules
from stacks import outputs as exports
from stacks.boards import ARDA_ROLES
from stacks.errors import Problem, show
from stacks.logs_model import Logs
from stacks.model import Node, StackConfig

ARDA = "iluvatar:arda"
TALOS = f"{ARDA}.talosVersion"
KUBERNETES = f"{ARDA}.kubernetesVersion"

# Talos minor -> (the oldest release it upgrades, the release from which on it is a downgrade no
# more allowed): stacks.releases.TALOS_MINORS, as machinery v1.14.1's compatibility/talos1NN packages state them.
TALOS_UPGRADES: dict[tuple[int, int], tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    row.minor: (row.upgrades_from, row.downgrades_below) for row in releases.TALOS_MINORS
}


def release(version: str) -> tuple[int, int, int]:
    """`v1.12.4` as (1, 12, 4)."""
    major, minor, patch = (int(x) for x in version.removeprefix("v").split(".")[:3])
    return major, minor, patch


@dataclass(frozen=True)
class DeployedArda:
    """What the last deployment ran on Arda (the stack output `arda`); empty on a first deployment."""

    talos_version: str | None = None
    kubernetes_version: str | None = None
    nodes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The output as exported, for plans.rollout to compare against.
    output: Mapping[str, Any] = field(default_factory=dict)
    # Whether the last deployment ran Argo CD: __main__.py exports gitopsRepoUrls only then, and `charts` records Argo
    # CD's chart only then (plans.rollout.state). Unknown reads as yes, so that an `argocd` missing from `charts` is said.
    gitops: bool = True

    @classmethod
    def from_output(cls, value: Any) -> DeployedArda:
        if not isinstance(value, Mapping) or not value.get("talosVersion"):
            return cls()
        nodes = value.get("nodes") or {}
        if not isinstance(nodes, Mapping):
            # Not a config rule (scripts/rule_coverage.py): the engine's own state is malformed.
            raise TypeError(f"the last deployment's arda output has nodes = {nodes!r}, not a mapping of machine to state")
        return cls(
            str(value["talosVersion"]), str(value.get("kubernetesVersion") or "") or None, {str(k): dict(v) for k, v in nodes.items()}, dict(value)
        )

    @property
    def deployed(self) -> bool:
        return self.talos_version is not None


_RELEASE = re.compile(r"^v\d+\.\d+\.\d+$")
_K3S_RELEASE = re.compile(r"^v\d+\.\d+\.\d+\+k3s\d+$")
# A chart version as the model takes it (stacks.model: Cilium.version, ArgoCd.version).
_CHART_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_RECORD = "add it as {tool} shows it (e.g. {example}), or give the outputs of a deployment that recorded it"


# The outputs the day-2 checks and plan read (stacks.pulumi_source.load, iluvatar.render.rollout_text, plans.rollout),
# each as the JSON type this program writes it; within `arda`, `ainur` and `storage`, the parts they read. Each reader
# takes another type for "nothing recorded" (a wrong `storage` is read as no OSD, a wrong `ainur` as no k3s to check),
# or fails on it: a value of another type is refused up front (`unreadable`), null aside (read as left out, as
# `pulumi stack output --json` never writes it for these). Every deployment writes lan, vips, gateways,
# loadBalancerPool, arda and storage (__main__.py).
READ_OUTPUTS: dict[str, type] = {
    exports.LAN: str,
    exports.VIPS: Mapping,
    exports.GATEWAYS: Mapping,
    exports.LOAD_BALANCER_POOL: Mapping,
    exports.ARDA: Mapping,
    exports.STORAGE: Mapping,
    exports.AINUR: Mapping,
    exports.DNSMASQ_CONF: str,
    exports.KUBE_VIP_ROLLED: str,
    exports.REMOTE_ACCESS: Mapping,
    exports.KMS_KEY_RESTORED: bool,
}
_PARTS: dict[str, dict[str, type]] = {
    # talosVersion, kubernetesVersion and k3sVersion: `_unrecorded`, which says which release to write.
    exports.ARDA: {
        "nodes": Mapping,
        "charts": Mapping,
        "clusterName": str,
        "clusterNetwork": Mapping,
        "clientCertificateExpires": str,
        "commands": Mapping,
        "endpoints": list,
        "logsStore": Mapping,
        "order": list,
        "pool": Mapping,
    },
    exports.AINUR: {
        "nodes": Mapping,
        "certificates": Mapping,
        "commands": Mapping,
        "order": list,
        "longhornPis": list,
        "headscaleClass": str,
        "rootsClass": str,
        "kubeVip": str,
        "serviceIp": str,
        "legacyRoots": bool,
        "secretsEncryption": bool,
        "secretsEpoch": bool,
    },
    exports.STORAGE: {"cephOsds": Mapping, "cephRetiring": Mapping, "classes": Mapping},
}
# Each machine's entry (arda.nodes.<name>, ainur.nodes.<name>), and each host's disks (storage.cephOsds.<host>).
_ENTRIES: dict[str, type] = {
    f"{exports.ARDA}.nodes": Mapping,
    f"{exports.AINUR}.nodes": Mapping,
    f"{exports.STORAGE}.cephOsds": list,
    f"{exports.STORAGE}.cephRetiring": list,
}
_KINDS: dict[type, str] = {Mapping: "a mapping", list: "a list", str: "a string", bool: "true or false"}
_WHAT: dict[str, str] = {
    f"{exports.ARDA}.nodes": "of machine to state",
    f"{exports.AINUR}.nodes": "of machine to state",
    f"{exports.STORAGE}.cephOsds": "of machine to disks",
}
_AS_WRITTEN = "give the outputs `pulumi stack output --json` writes"


# The most of a mistyped output a message echoes: its type is what is wrong, and a whole output runs to kilobytes.
_ECHO = 60


def _echo(value: Any) -> str:
    """`value` as JSON, cut to its first _ECHO characters with its length said when longer."""
    text = json.dumps(value, default=str)
    return text if len(text) <= _ECHO else f"{text[:_ECHO].rstrip(chr(92))}... ({len(text):,} characters)"


def _json_of(text: str, kind: type) -> bool:
    """Whether `text` is JSON of `kind` (a mapping, a list)."""
    try:
        return isinstance(json.loads(text), kind)
    except ValueError:
        return False


def _mistyped(outputs: Mapping[str, Any]) -> str | None:
    """The first output the day-2 checks read that is not of the type this program writes it as, said, or None."""

    def wrong(path: str, value: Any, kind: type) -> str | None:
        if value is None or isinstance(value, kind):
            return None
        what = " ".join(filter(None, (_KINDS[kind], _WHAT.get(path))))
        if isinstance(value, str) and _json_of(value, kind):
            # The output encoded as JSON a second time (a script's json.dumps of a value already JSON): the string is
            # right but for its quotes, so the message says that, not the whole output again.
            return (
                f"{path} is a string holding JSON ({_echo(value)}): the output encoded twice, not {what}, as this program "
                f"writes it; decode it once, or {_AS_WRITTEN}"
            )
        return f"{path} is {_echo(value)}, not {what}, as this program writes it; {_AS_WRITTEN}"

    for key, kind in READ_OUTPUTS.items():
        value = outputs.get(key)
        if (why := wrong(key, value, kind)) is not None:
            return why
        if not isinstance(value, Mapping):
            continue
        for part, part_kind in _PARTS.get(key, {}).items():
            found = value.get(part)
            if (why := wrong(f"{key}.{part}", found, part_kind)) is not None:
                return why
            entry_kind = _ENTRIES.get(f"{key}.{part}")
            if entry_kind is None or not isinstance(found, Mapping):
                continue
            for name, entry in found.items():
                if entry is None:
                    # This program never writes an entry null (plans.rollout.arda_state, plans.storage.state): read
                    # as absent, a null would hide what ran there (an OSD's disks removed without a retire step), so
                    # it is an edit the checks cannot read.
                    return (
                        f"{key}.{part}.{name} is null, but this program writes it as {_KINDS[entry_kind]}, never null: "
                        f"what it recorded cannot be read; {_AS_WRITTEN}"
                    )
                if (why := wrong(f"{key}.{part}.{name}", entry, entry_kind)) is not None:
                    return why
    return None


# What `pulumi stack output --json` writes for a secret without --show-secrets, wherever it is in an output: each
# secret value, at any depth, is replaced by this string (pulumi v3.259.0 pkg/backend/display/json.go:48-67,
# massagePropertyValue, called on the outputs at pkg/cmd/pulumi/stack/stack_output.go:161).
HIDDEN = "[secret]"


def hidden(outputs: Mapping[str, Any]) -> list[str]:
    """The paths, among the outputs the day-2 checks read (READ_OUTPUTS), whose value is hidden as "[secret]": the checks
    cannot read them. No deployment of this program writes any of them as a secret (the secrets are other outputs: the
    kubeconfigs, the talosconfig, the KMS key), so it is a deployment that marked one so, or a hand edit."""

    def walk(path: str, value: Any) -> list[str]:
        if path.startswith("ainur.certificates."):
            # The Pis' certificate dates, which deployments before they were unsecreted print hidden: the checks read a
            # hidden one as unrecorded (plans.rollout.recorded_certificates), as for a Pi the last run did not reach.
            return []
        if value == HIDDEN:
            return [path]
        if isinstance(value, Mapping):
            return [p for k, v in value.items() for p in walk(f"{path}.{k}", v)]
        if isinstance(value, list):
            return [p for i, v in enumerate(value) for p in walk(f"{path}[{i}]", v)]
        return []

    return [p for key in READ_OUTPUTS if key in outputs for p in walk(key, outputs[key])]


# The outputs every deployment of this program writes and the day-2 checks read (__main__.py exports them whatever the
# stack), and those it writes besides when the stack has the Ainur (the `ainur` output and the netboot layer's
# dnsmasqConf, exported only then). A file without one of them is not this Iluvatar's deployment's outputs but a part of
# them: read so, what the missing output records reads as never deployed (without `arda`, every Arda machine "new:
# installs from maintenance mode" on a running cluster).
EVERY_DEPLOYMENT = (exports.LAN, exports.VIPS, exports.GATEWAYS, exports.LOAD_BALANCER_POOL, exports.ARDA, exports.STORAGE)
WITH_AINUR = (exports.AINUR, exports.DNSMASQ_CONF)
# The outputs only a deployment with the Ainur writes (__main__.py): any of them, or the Ainur's VIP among the vips,
# says the deployment had it.
_AINUR_SIGNS = (
    exports.AINUR,
    exports.AINUR_KUBECONFIG,
    exports.AINUR_USER_DATA,
    exports.AINUR_NETWORK_CONFIG,
    exports.DNSMASQ_CONF,
    exports.KUBE_VIP_ROLLED,
)
_WRITE_ALL = "write them all with `pulumi stack output --json --show-secrets > file`"
_READ_AS_NEVER = "planned from them, what a missing output records reads as never deployed"


def _lacked(outputs: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The outputs every deployment writes that `outputs` lack, and those a deployment with the Ainur writes that they
    lack when they show it had one (vips.ainur, or an output only such a deployment writes)."""
    vips = outputs.get(exports.VIPS)
    had_ainur = (isinstance(vips, Mapping) and exports.AINUR_VIP in vips) or any(outputs.get(k) is not None for k in _AINUR_SIGNS)
    lacks = [k for k in EVERY_DEPLOYMENT if outputs.get(k) is None]
    return lacks, [k for k in WITH_AINUR if outputs.get(k) is None] if had_ainur else []


def _held_after(outputs: Mapping[str, Any], lacked: Sequence[str]) -> list[str]:
    """The outputs `outputs` hold that __main__.py exports after the first of `lacked`, in its order (stacks.outputs.SINCE):
    none, for a first `pulumi up` whose program stopped part-way."""
    order = list(exports.SINCE)
    first = min(lacked, key=order.index)
    return [k for k in order if outputs.get(k) is not None and order.index(k) > order.index(first)]


def may_be_a_stopped_first_up(outputs: Mapping[str, Any]) -> bool:
    """Whether outputs `missing` finds partial fit a first `pulumi up` whose program stopped part-way: every output they
    hold exported before the first one they lack. Its fix is another `pulumi up`, which reads what they lack as never
    deployed, as on a first deployment it is."""
    lacks, lacks_ainur = _lacked(outputs)
    return bool(outputs) and bool(lacks or lacks_ainur) and not _held_after(outputs, [*lacks, *lacks_ainur])


def missing(outputs: Mapping[str, Any]) -> str | None:
    """Which outputs a deployment with the layers these outputs show writes and they lack (absent, or null, which the
    checks read as absent), said with where such a part comes from and its fix, or None. `{}`, a stack never deployed,
    lacks none.

    Two deployments write a part. An older Iluvatar wrote none of the outputs exported since a change after it
    (stacks.outputs.SINCE): outputs that lack one and hold none from its time on are read as its; no `pulumi up` of this
    one can start from them (nothing says Arda and the Ainur already run). A first `pulumi up` whose program stopped with an error part-way records the outputs
    exported before it stopped, in __main__.py's order: the Python SDK registers the stack's outputs once, those exported
    so far, as the program ends, even with an error (pulumi 3.272.0 sdk/python/lib/pulumi/runtime/stack.py:234-251 and
    :320-328), and the engine records what a failed update registered, keeping the outputs it had besides (its step
    executor defers the stack's outputs to the update's end, since 2024), none on a first. (A resource that fails is no such stop: every export is sent in one request, which a failed
    resource's output fails whole, runtime/resource.py:1434-1438, and the outputs stay the last finished run's, or {}.)
    Outputs that fit neither were cut short or edited."""
    if not outputs:
        return None
    lacks, lacks_ainur = _lacked(outputs)
    if not lacks and not lacks_ainur:
        return None
    said = [f"{_and(lacks)}, which every deployment writes"] if lacks else []
    if lacks_ainur:
        vips = outputs.get(exports.VIPS)
        ainur_vip = isinstance(vips, Mapping) and exports.AINUR_VIP in vips
        sign = f"{exports.VIPS}.{exports.AINUR_VIP}" if ainur_vip else next(k for k in _AINUR_SIGNS if outputs.get(k) is not None)
        said.append(f"{_and(lacks_ainur)}, which one with the Ainur writes (its {sign} says it had one)")
    lacking = f"it lacks {', and '.join(said)}"
    order = list(exports.SINCE)
    held = [k for k in order if outputs.get(k) is not None]
    oldest = min((*lacks, *lacks_ainur), key=lambda k: exports.SINCE[k])
    newer = [k for k in held if exports.SINCE[k] >= exports.SINCE[oldest]]
    first = min((*lacks, *lacks_ainur), key=order.index)
    after = _held_after(outputs, [*lacks, *lacks_ainur])
    older = f"an Iluvatar from before {oldest} was an output ({exports.SINCE[oldest]} UTC)"
    # No key of the stack says that Arda and the Ainur already run (arda.subnetsRunning says only which subnets Arda
    # runs): this Iluvatar's `up` would read them as never deployed, so the fix is an `up` of an Iluvatar that writes them.
    with_older = (
        f"this Iluvatar cannot start from them, and no key says Arda and the Ainur already run (arda.subnetsRunning names only "
        f"the subnets Arda runs), so do not run its `pulumi up`; first run `pulumi up` with the Iluvatar that deployed them, "
        f"or the first one that writes {oldest} (from {exports.SINCE[oldest]} UTC), after its `pulumi preview` plans no "
        f"machine as new"
    )
    stopped = "a first `pulumi up` whose program stopped with an error part-way"
    if not newer and not after:
        return (
            f"a part of a deployment's outputs, not all of them: {lacking}; such outputs are written by {older}, or by "
            f"{stopped} (those it exported before {first}); {_READ_AS_NEVER}; after the older Iluvatar, {with_older}; after "
            f"the first `up`, mend what stopped it and run `pulumi up` again to its end; then {_WRITE_ALL}"
        )
    if not newer:
        return f"the outputs of {older}: {lacking}; {_READ_AS_NEVER}; {with_older}; then {_WRITE_ALL}"
    if not after:
        return (
            f"the outputs of {stopped}: those it exported before {first}; {lacking}; {_READ_AS_NEVER}; mend what stopped "
            f"it and run `pulumi up` again to its end, then {_WRITE_ALL}"
        )
    return (
        f"a part of a deployment's outputs, not all of them: {lacking}, yet it holds {newer[0]}, which no Iluvatar writes "
        f"without {oldest}, and {after[0]}, which a first `pulumi up` exports after {first}: cut short or edited; "
        f"{_READ_AS_NEVER}; {_WRITE_ALL} (a stack never deployed is {{}})"
    )


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def unreadable(outputs: Mapping[str, Any]) -> str | None:
    """Why the day-2 plan cannot read the last deployment's outputs, or None: one of the outputs it reads of another
    type than this program writes it as (`_mistyped`), or Arda's or the Ainur's machines recorded without the release
    they run. The latter (an older deployment's outputs, or ones edited by hand) would be planned from nothing, or from
    the stack's own release: `Talos None -> v1.14.1`, a Kubernetes step left out, k3s's checks off. Every deployment
    since these keys exist writes them (plans.rollout: arda_state, ainur_state), each machine's installer at the
    cluster's Talos release; `iluvatar render --previous` and `pulumi preview` both refuse."""
    if (why := _mistyped(outputs)) is not None:
        return why
    arda = outputs.get(exports.ARDA)
    charts = arda.get("charts") if isinstance(arda, Mapping) else None
    for chart, version in charts.items() if isinstance(charts, Mapping) else ():
        # A deployment records each chart's version as the stack writes it (plans.rollout.arda_state), which the model
        # takes as three numbers alone: anything else is an edit the chart checks cannot compare. A null is read as an
        # unrecorded chart, and warned of by name (`_charts`).
        if version is not None and not (isinstance(version, str) and _CHART_VERSION.match(version)):
            return (
                f"arda.charts.{chart} is {_echo(version)}, not a chart version (three numbers, e.g. 1.18.4), as this program writes it; {_AS_WRITTEN}"
            )
    if (lost := _machines_lost(outputs, exports.ARDA)) is not None:
        return lost
    if isinstance(arda, Mapping) and arda.get("nodes"):
        nodes = arda["nodes"]
        version = arda.get("talosVersion")
        unrecorded = _unrecorded(
            "arda.talosVersion",
            arda.get("talosVersion", _MISSING),
            _RELEASE,
            "Talos",
            len(nodes),
            "the plan starts from the Talos release Arda runs",
            "`talosctl version`",
            "v1.13.9",
        ) or _unrecorded(
            "arda.kubernetesVersion",
            arda.get("kubernetesVersion", _MISSING),
            _RELEASE,
            "Kubernetes",
            len(nodes),
            "the plan starts from the Kubernetes release Arda runs",
            "`kubectl version`",
            "v1.34.12",
        )
        if unrecorded is not None:
            return unrecorded
        for name, node in nodes.items():
            installer = node.get("installer") if isinstance(node, Mapping) else None
            if not isinstance(installer, str) or ":" not in installer:
                written = "missing" if installer is None else json.dumps(installer)
                return (
                    f"arda.nodes.{name}.installer is {written}: the plan compares each machine's installer image "
                    f"(factory.talos.dev/...:{version}) with the one it installs now; give the outputs `pulumi stack output --json` writes"
                )
            tag = installer.rsplit(":", 1)[1]
            if tag != version:
                return (
                    f"arda.nodes.{name}.installer is {installer}, at Talos {tag}, but arda.talosVersion is {version}: a deployment "
                    "records every machine at the cluster's release, and a plan from the wrong one could cross two minors in one "
                    "roll; give the outputs `pulumi stack output --json` writes"
                )
    if (lost := _machines_lost(outputs, exports.AINUR)) is not None:
        return lost
    ainur = outputs.get(exports.AINUR)
    if isinstance(ainur, Mapping) and ainur.get("nodes"):
        return _unrecorded(
            "ainur.k3sVersion",
            ainur.get("k3sVersion", _MISSING),
            _K3S_RELEASE,
            "k3s",
            len(ainur["nodes"]),
            "k3s's upgrade checks start from the release the Ainur run",
            "`k3s --version`",
            "v1.34.12+k3s1",
        )
    return None


def _machines_lost(outputs: Mapping[str, Any], name: str) -> str | None:
    """Why a cluster output (`arda`, `ainur`) records the release its cluster runs but not its machines, or None. A
    deployment records every machine beside the release (stacks.outputs.CLUSTER_RELEASES), so `nodes` missing, null, or
    `{}` (with the steps it ran on them, `commands`, or without) is an edit: without them the plan takes each running machine as
    new, "installs from maintenance mode" on Arda, "joins k3s" on the Ainur."""
    cluster = outputs.get(name)
    release, product = exports.CLUSTER_RELEASES[name]
    if not isinstance(cluster, Mapping) or cluster.get(release) is None:
        return None
    nodes = cluster.get("nodes")
    steps = cluster.get("commands")
    if nodes is None:
        written, ran = "missing" if "nodes" not in cluster else "null", ""
    elif isinstance(nodes, Mapping) and not nodes:
        # No Iluvatar ever wrote `{}` beside the release, with or without `commands` (absent before they were recorded):
        # `nodes` holds every machine of the cluster since the output was first written (plans.rollout.state,
        # components.ainur), and a stack has at least one of each cluster's control planes.
        written, ran = "{}", ""
        if isinstance(steps, Mapping) and steps:
            shown = sorted(str(k) for k in steps)
            ran = f" and {name}.commands the steps it ran ({', '.join(shown[:3])}{', ...' if len(shown) > 3 else ''})"
    else:
        return None
    return (
        f"{name}.nodes is {written}, but {name}.{release} records {product} {cluster[release]} running{ran}: the plan reads "
        f"each machine's state from it, and without it plans every machine as new; {_AS_WRITTEN}"
    )


_MISSING = object()


def _unrecorded(path: str, value: Any, release: re.Pattern[str], product: str, machines: int, why: str, tool: str, example: str) -> str | None:
    """Why a cluster output's release at `path` cannot start the plan (missing, or not a `product` release), or None."""
    if isinstance(value, str) and release.match(value):
        return None
    # A key left out and one written as null are told apart: the outputs read back are as the deployment wrote them.
    written = "missing" if value is _MISSING else "null" if value is None else f"{json.dumps(value)}, not a {product} release"
    cluster = path.split(".")[0]
    return f"{path} is {written}, but {cluster}.nodes records {machines} machine(s): {why}; {_RECORD.format(tool=tool, example=example)}"


def machines_of(value: Any) -> dict[str, Mapping[str, Any]]:
    """A cluster state output's machines by name (`nodes`), empty when there is none."""
    nodes = value.get("nodes") if isinstance(value, Mapping) else None
    if nodes is None:
        return {}
    if not isinstance(nodes, Mapping):
        raise TypeError(f"nodes = {nodes!r}, not a mapping of machine to state")
    return {str(k): v for k, v in nodes.items() if isinstance(v, Mapping)}


def former_names(stack: StackConfig, previous: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Machines the last deployment knew under another name, by MAC: {name now: name then}.

    A machine is its MAC: renaming it in the inventory must move its resources (an alias), never
    delete them and create new ones, which would reset the machine that now answers at that address.
    """
    by_mac = {str(v.get("mac")): name for name, v in previous.items() if v.get("mac")}
    return {n.name: by_mac[n.mac] for n in stack.nodes if n.mac in by_mac and by_mac[n.mac] != n.name}


def installed(node: Node, deployed: DeployedArda, former: str | None = None) -> bool:
    """Whether the last deployment had this machine, under its name (or `former`, when renamed) and with its MAC.

    Such a machine boots from its own disk: a change of it needs neither the Ainur's netboot nor a power-on. A
    machine new to the inventory, or replaced by another (its MAC changed), is not installed.
    """
    entry = deployed.nodes.get(former or node.name)
    return deployed.deployed and entry is not None and str(entry.get("mac")) == node.mac


def talos_upgrade_problem(target: str, host: str) -> str | None:
    """Why Talos `target` cannot be installed over a node running `host` (machinery's rule), or None."""
    to, running = release(target), release(host)
    if (to[0], to[1]) not in TALOS_UPGRADES:
        return None  # the static rule (stacks.rules) already refuses an unsupported release
    oldest, ceiling = TALOS_UPGRADES[(to[0], to[1])]
    if running < oldest:
        return f"Talos {to[0]}.{to[1]} upgrades machines from {oldest[0]}.{oldest[1]}.{oldest[2]} on, and they run {host}"
    if running >= ceiling:
        return f"Talos {to[0]}.{to[1]} cannot be installed over {host}, which is {ceiling[0]}.{ceiling[1]} or newer"
    return None


def check(stack: StackConfig, deployed: DeployedArda, ainur: Any = None, dnsmasq_conf: Any = None, storage_output: Any = None) -> list[Problem]:
    """The changes refused against what the last deployment runs: Arda's (`deployed`) and the Ainur's (the outputs
    `ainur` and `dnsmasqConf`, as read back, and `storage`'s classes)."""
    problems = (
        _k3s(stack, ainur) + _service_ip(stack, ainur, dnsmasq_conf) + _roots_class(stack, ainur, dnsmasq_conf) + _netbooted_longhorn(stack, ainur)
    )
    problems += _headscale_class(stack, ainur, storage_output)
    if not deployed.deployed:
        if stack.arda.subnets_running:
            # Nothing runs to be vouched for: the first `up` makes the subnets and records them (clusterNetwork).
            problems.append(
                Problem(
                    SUBNETS_RUNNING,
                    "true, but this stack has deployed no Arda yet (no arda output): there are no running subnets to say it "
                    "runs, and the first `up` records the ones it makes; remove it",
                )
            )
        return problems
    problems += _charts(stack, deployed) + _control_plane_addresses(stack, deployed) + _logs_store(stack, deployed) + _encryption(stack, deployed)
    problems += _cluster_subnets(stack, deployed) + _cluster_name(stack, deployed) + _arda_vip(stack, deployed) + _roles(stack, deployed)
    return problems + _arda_versions(stack, deployed) + _kinds_on_the_way(stack, deployed)


def _kinds_on_the_way(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """A move from Talos 1.12 to 1.13 is no roll: each machine's own step stages its new config on the running 1.12
    (upgrader/internal/apply: the dry run, then the staged config), whose decoder refuses a kind 1.13 added. The static
    rule covers a stack on 1.12 itself (stacks.rules.kinds_1_12_refuses); a path through 1.13.9 leaves configs alone."""
    running = deployed.output.get("talosVersion")
    if not isinstance(running, str) or releases.minor_of(running) != (1, 12) or releases.minor_of(stack.arda.talos_version) != (1, 13):
        return []
    patches = rules.talos_patches_of(stack.arda, list(enumerate(stack.nodes)))
    return rules.kinds_1_12_refuses(patches, f"Talos {running}, on which each machine stages its new config,")


K3S = "iluvatar:ainur.k3sVersion"


def k3s_release(version: str) -> tuple[int, int, int]:
    """`v1.35.8+k3s1` as (1, 35, 8)."""
    return release(version.split("+", 1)[0])


def k3s_build(version: str) -> tuple[int, int, int, int]:
    """`v1.33.6+k3s2` as (1, 33, 6, 2): k3s's own revision of one Kubernetes release (`+k3s1`, `+k3s2`...) comes last."""
    revision = re.search(r"\+k3s(\d+)$", version)
    return (*k3s_release(version), int(revision.group(1)) if revision else 0)


def _k3s(stack: StackConfig, ainur: Any) -> list[Problem]:
    """k3s moves forward one minor at a time, as Kubernetes does (its API server's version skew), and never back."""
    before = ainur.get("k3sVersion") if isinstance(ainur, Mapping) else None
    if stack.ainur is None or not isinstance(before, str) or before == stack.ainur.k3s_version:
        return []
    now = stack.ainur.k3s_version
    new, old = k3s_release(now), k3s_release(before)
    # A step back, or Ainur below this Iluvatar's floor, first: no run of this Iluvatar makes either (no_way), whatever
    # else the change crosses.
    if (back := _k3s_back(now, before)) is not None:
        return [back]
    if (below_floor := _k3s_below_floor(now, before)) is not None:
        return [below_floor]
    crosses = k3s_etcd_3_6(now) and not k3s_etcd_3_6(before) and k3s_release(before) < K3S_ETCD_STOP
    skips = new[:2] > (old[0], old[1] + 1)
    if crosses:
        # Said first: a minor skipped too is a longer way through the same stop, which the fix lays out (k3s_path).
        skipped = ", and k3s upgrades one minor at a time, as Kubernetes does" if skips else ""
        return [
            Problem(
                K3S,
                f"{now} embeds etcd 3.6, and the Ainur run {before}, whose etcd 3.5 is older than v3.5.26: etcd moves to 3.6 "
                f"safely only from v3.5.26 (older members can bring removed ones back, a reflashed vala among them){skipped}; "
                f"{_k3s_way(before, now)} (docs/day2.md#upgrading-k3s-on-the-ainur)",
            )
        ]
    if skips:
        return [
            Problem(
                K3S,
                f"{now} skips a minor: the Ainur run {before}, and k3s upgrades one minor at a time, as Kubernetes does; "
                f"{_k3s_way(before, now)} (docs/day2.md#upgrading-k3s-on-the-ainur)",
            )
        ]
    return []


def k3s_path(k3s: str, to_k3s: str) -> list[tuple[str, str]]:
    """The Ainur's runs from k3s `k3s` to `to_k3s` (forward: no_way says a step back), each as the release to write (a
    minor on the way as `v1.31.x`: any of its releases) and why it is that one, or "": one minor a run, as _k3s allows,
    through K3S_ETCD_STOP_RELEASE when the way crosses etcd's move to 3.6. `iluvatar versions --previous` lays it out,
    and _k3s's messages name its first run, so that each run the user takes is one _k3s accepts."""
    if k3s == to_k3s:
        return []
    stop, (_, have), (_, want) = K3S_ETCD_STOP[1], releases.minor_of(k3s), releases.minor_of(to_k3s)
    crosses = k3s_etcd_3_6(to_k3s) and not k3s_etcd_3_6(k3s) and k3s_release(k3s) < K3S_ETCD_STOP
    runs: list[tuple[str, str]] = []
    for minor in range(have, want + 1):
        if crosses and minor == stop:
            runs.append((K3S_ETCD_STOP_RELEASE, "etcd 3.5.26 or later, from which etcd moves to 3.6 safely"))
        if minor == want:
            runs.append((to_k3s, ""))
        elif minor > have and not (crosses and minor == stop):
            runs.append((f"v1.{minor}.x", ""))
    return runs


def _k3s_way(before: str, now: str) -> str:
    """The fix of a k3s change that is no single run: its first run (a minor's newest release this Iluvatar knows, as
    an example), and the whole way, as `iluvatar versions --previous` lays it out (k3s_path)."""
    runs = k3s_path(before, now)
    first = runs[0][0]
    if first.endswith(".x"):
        minor = int(first.split(".")[1])
        newest = releases.KUBERNETES_NEWEST.get(minor)
        example = f" (e.g. {newest}+k3s{max(releases.k3s_revisions(newest))})" if newest is not None else ""
        first = f"a v1.{minor} release{example}"
    way = ", ".join(release for release, _ in runs)
    return f"set {first} first; the way there, one `pulumi up` each, as `iluvatar versions --previous` lays it out: {way}"


def _k3s_back(now: str, before: str) -> Problem | None:
    """k3s set back: no `up` makes it, in one run or in many (its datastore and API server never go back a release)."""
    if k3s_build(now) < k3s_build(before):
        return Problem(K3S, f"{now} is older than {before}, which the Ainur run; k3s cannot be downgraded (docs/day2.md#upgrading-k3s-on-the-ainur)")
    return None


def _k3s_below_floor(now: str, before: str) -> Problem | None:
    """k3s more than a minor ahead of Ainur that run below the floor this Iluvatar gives them (stacks.versions): the next
    minor is refused here, so the one way up is the Iluvatar that deployed them, which took it: said, rather than a
    "first" this one refuses."""
    new, old = k3s_release(now), k3s_release(before)
    if not (new[:2] > (old[0], old[1] + 1) and old[:2] < (versions.K3S_MIN_KUBERNETES[0], versions.K3S_MIN_KUBERNETES[1] - 1)):
        return None
    floor = f"v{versions.K3S_MIN_KUBERNETES[0]}.{versions.K3S_MIN_KUBERNETES[1]}"
    below = f"v{versions.K3S_MIN_KUBERNETES[0]}.{versions.K3S_MIN_KUBERNETES[1] - 1}"
    # From any release of the minor below the floor (all embed etcd 3.5, older than K3S_ETCD_STOP), the way on is one.
    runs = k3s_path(f"{below}.0+k3s1", now)
    on = f" write {now} here" if len(runs) == 1 else f", with this one, {_k3s_way(f'{below}.0+k3s1', now)}"
    return Problem(
        K3S,
        f"{now} skips a minor: the Ainur run {before}, and k3s upgrades one minor at a time, as Kubernetes does; this "
        f"Iluvatar runs the Ainur from {floor} on, so take them one minor at a time up to a {below} release with the "
        f"Iluvatar that deployed them (git checkout of its commit, `pulumi up`), then{on} "
        "(docs/day2.md#upgrading-k3s-on-the-ainur)",
    )


def no_way(stack: StackConfig, deployed: DeployedArda, ainur: Any = None) -> list[Problem]:
    """The version changes against what runs that this Iluvatar makes in no `pulumi up`, nor in any series of them:
    Talos with no path from what Arda runs (a minor back, a minor the table does not hold), Kubernetes or k3s set
    back, k3s from below this Iluvatar's floor. check refuses each with these very problems (_arda_versions, _k3s);
    `iluvatar versions --previous` says them in place of a path, so the two never disagree. The other version refusals
    (a minor skipped, Talos and Kubernetes in one run) are a path of several runs, which versions lays out."""
    problems: list[Problem] = []
    if deployed.deployed:
        assert deployed.talos_version is not None
        arda = stack.arda
        talos_moves = arda.talos_version != deployed.talos_version
        refused = _talos_no_path(arda.talos_version, arda.kubernetes_version, deployed) if talos_moves else []
        problems += refused
        # As _arda_versions: where the path moves Kubernetes on the way, _talos_path judges the Kubernetes it ends at.
        running = deployed.kubernetes_version or arda.kubernetes_version
        hops = (
            releases.talos_path(deployed.talos_version, running, arda.talos_version, arda.kubernetes_version) if talos_moves and not refused else []
        )
        on_the_path = bool(releases.kubernetes_steps(hops))
        if not on_the_path and (back := _kubernetes_back(stack, deployed)) is not None:
            problems.append(back)
    before = ainur.get("k3sVersion") if isinstance(ainur, Mapping) else None
    if stack.ainur is not None and isinstance(before, str) and before != stack.ainur.k3s_version:
        # As _k3s, which checks these two first.
        problems += [p for p in (_k3s_back(stack.ainur.k3s_version, before), _k3s_below_floor(stack.ainur.k3s_version, before)) if p is not None][:1]
    return problems


def may_have_sealed(ainur: Any) -> bool:
    """Whether the Ainur of the last deployment may have run k3s with secrets encryption: its `ainur` output says so, or
    does not say (`secretsEncryption` absent). The rewrite step among the `commands` is no answer for outputs without the
    key: main deployed Ainur with the flag on by default before that step existed (stacks/model.py's default was true),
    and their outputs record neither. Only the valar know; the off-`up` asks them (plans.k3s.secrets_off_script)."""
    if not isinstance(ainur, Mapping) or not ainur.get("k3sVersion"):
        return False
    return ainur.get("secretsEncryption") is not False


# The `ainur` output's key, written since ainur-secrets-on's trigger is the secrets epoch (components.ainur): an output
# with it, or with SECRETS_OFFS (the count older outputs carried as that trigger, read no more), comes from an Iluvatar
# whose rewrite step records the config it rotated to.
SECRETS_EPOCH = "secretsEpoch"
SECRETS_OFFS = "secretsOffs"


def before_sealed_record(ainur: Any) -> bool:
    """Whether the last deployment's Ainur ran with secrets encryption and an on step from an Iluvatar whose rewrite step
    left no record of the config it rotated to (its output has `commands` with `secrets-on`, no SECRETS_EPOCH and no
    SECRETS_OFFS): the on
    step's record names the config before that rotation, so its first run with this version (its command changed)
    restarts k3s once (plans.k3s, the comment above secrets_rewrite_script)."""
    if not isinstance(ainur, Mapping) or ainur.get("secretsEncryption") is not True or SECRETS_EPOCH in ainur or SECRETS_OFFS in ainur:
        return False
    commands = ainur.get("commands")
    return isinstance(commands, Mapping) and "secrets-on" in commands


def before_secrets_on(ainur: Any) -> bool:
    """Whether the last deployment's Ainur ran with secrets encryption and was deployed by an Iluvatar that did not keep
    the on step (components.ainur) while the flag is on: its `commands` list the rewrite step and not `secrets-on`. Its
    first `up` with the step runs it once, a k3s restart included (plans.k3s.FRESH_STAGE: only a config k3s made itself
    with no rewrite since needs none)."""
    if not isinstance(ainur, Mapping) or ainur.get("secretsEncryption") is not True:
        return False
    commands = ainur.get("commands")
    return isinstance(commands, Mapping) and "secrets-on" not in commands


SERVICE_IP = "iluvatar:ainur.serviceIp"


def previous_service_ip(ainur: Mapping[str, Any], dnsmasq_conf: Any) -> str | None:
    """The service address of the last deployment: its `ainur` output's `serviceIp`, or, in outputs written before that
    key was (review 41-4 N5: the first `up` after the upgrade), the address its exported dnsmasq config listens on
    besides the loopback (plans.netboot.dnsmasq.dnsmasq_conf's `listen-address=<service address>`, exported as
    `dnsmasqConf` by every deployment with the netboot layer, and so by every one that netbooted a maia)."""
    before = ainur.get("serviceIp")
    if isinstance(before, str):
        return before
    if isinstance(dnsmasq_conf, str):
        for line in dnsmasq_conf.splitlines():
            key, _, value = line.strip().partition("=")
            if key == "listen-address" and value not in ("", "127.0.0.1"):
                return value
    return None


def netbooted_before(ainur: Any, dnsmasq_conf: Any) -> frozenset[str] | None:
    """The Pis the last deployment netbooted, by name, or None where its outputs cannot tell (review 41-10 M1).

    Its `ainur` output names them by the `image` each node has from 0e7fd23 on; the first netboot version (66ca479,
    whose nodes were {mac, ip, role, config}) did not, and there its exported dnsmasq config is the direct evidence:
    each netbooting Pi's `dhcp-host=<mac>,set:known,...,set:rpiboot` line and, with any, the bootloaders'
    `pxe-service=tag:rpiboot,...` line (plans/netboot/dnsmasq.py at 66ca479, :153 and :200; unchanged since). Where a
    Pi was netbooted but none is named (a Pi on a VLAN has no dhcp-host line), or the last deployment left an `ainur`
    output and no dnsmasq config, the answer is None: a caller keeps what it would lose (a root's volume) then."""
    if not isinstance(ainur, Mapping) or not ainur:
        return frozenset()
    given = ainur.get("nodes")
    nodes: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    named = {name for name, n in nodes.items() if isinstance(n, Mapping) and n.get("image")}
    if not isinstance(dnsmasq_conf, str):
        return frozenset(named) if named or "legacyRoots" in ainur else None
    tagged: set[str] = set()
    for line in dnsmasq_conf.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "dhcp-host" and "set:rpiboot" in value.split(","):
            tagged.add(value.split(",", 1)[0].lower())
    named |= {name for name, n in nodes.items() if isinstance(n, Mapping) and str(n.get("mac", "")).lower() in tagged}
    if not named and "tag:rpiboot" in dnsmasq_conf:
        return None
    return frozenset(named)


def _service_ip(stack: StackConfig, ainur: Any, dnsmasq_conf: Any = None) -> list[Problem]:
    """Review 41-3 M3: the service address cannot move under netbooted maiar. Ganesha's Bind_addr and kube-vip's address
    move at once, in the netboot layer, before any roll step: every running maia's root, hard-mounted from the old
    address, hangs, and its EEPROM's TFTP_IP still names the old one, so it cannot boot from the new. Refused while the
    last deployment had a netbooting maia that the stack still netboots; the runbook moves them out first. The address
    the last deployment served on: `previous_service_ip`."""
    if stack.ainur is None or not isinstance(ainur, Mapping):
        return []
    before, now = previous_service_ip(ainur, dnsmasq_conf), str(stack.ainur.service_ip)
    nodes = ainur.get("nodes")
    if not isinstance(before, str) or before == now or not isinstance(nodes, Mapping):
        return []
    # Where the outputs cannot name them (netbooted_before), every Pi the last deployment ran counts.
    known = netbooted_before(ainur, dnsmasq_conf)
    netbooted = set(nodes) if known is None else known
    still = sorted(n.name for n in stack.ainur_nodes if n.boot == "netboot" and n.name in netbooted)
    if not still:
        return []
    return [
        Problem(
            SERVICE_IP,
            f"{now} moves the service address from {before}, which the netbooted maiar {', '.join(still)} mount their roots "
            f"from and their EEPROMs' TFTP_IP names: NFS-Ganesha and kube-vip would move at once and every one of them would "
            f"hang on its root, then fail to boot. Set it back to {before}, or move them off it first "
            "(docs/layers/ainur.md#moving-the-service-address)",
        )
    ]


NETBOOTED_LONGHORN_RUNBOOK = "docs/security.md#a-netbooted-maia-that-held-longhorn-replicas"


def _netbooted_longhorn(stack: StackConfig, ainur: Any) -> list[Problem]:
    """A netbooted maia is no Longhorn Pi any more (stacks.storage.longhorn_pis) and gets its taint at its next roll, which
    evicts Longhorn's manager and instance manager from it: the replicas on its disk stop. One that was a Longhorn Pi at
    the last deployment (`longhornPis` of the outputs) may hold a volume's last healthy replica, so while it keeps its
    `dataDisks` the stack is refused, with the way: evict its replicas in Longhorn, then remove the disk from the stack,
    which says the move was made. From outputs that did not record the Longhorn Pis, nothing to compare."""
    if stack.ainur is None or not isinstance(ainur, Mapping) or not isinstance(ainur.get("longhornPis"), list):
        return []
    had = set(ainur["longhornPis"])
    out = []
    for i, node in enumerate(stack.nodes):
        if node.boot != "netboot" or node.name not in had or not node.data_disks:
            continue
        disks = "[" + ", ".join(str(d) for d in node.data_disks) + "]"
        out.append(
            Problem(
                f"iluvatar:nodes[{i}].dataDisks",
                f"{disks}: {node.name} netboots, and a netbooted maia's disk is no Longhorn disk any more: Longhorn's manager, whose "
                f"account reads every Secret, must not run for a kubelet whose credentials {node.name}'s NFS root exposes. The "
                f"next `up` taints {node.name} and Longhorn leaves it, and the last deployment kept Longhorn replicas there: a "
                f"volume whose last healthy replica is on {node.name} would be lost. Evict them first (Longhorn's UI: Node "
                f"{node.name}, Edit, Scheduling Disable and Eviction Requested true; wait until it holds no replica and every "
                f"volume is healthy), then remove {node.name}'s dataDisks ({NETBOOTED_LONGHORN_RUNBOOK})",
            )
        )
    return out


ROOTS_RUNBOOK = "docs/layers/ainur.md#changing-the-netbooted-roots-class"
CLAIMS_RUNBOOK = "docs/day2.md#the-ainurs-longhorn-claims-encrypted"


def state_class(stack: StackConfig) -> str:
    """The class of the Ainur's own claims (Headscale's state, the Git mirror), as plans.storage.git_mirror_class picks it
    (the tests hold them equal): Longhorn's encrypted class where Longhorn runs and the stack asks for it, Longhorn's,
    else k3s's local-path."""
    longhorn = stack.gitops is not None and stack.ainur is not None and bool(storage.longhorn_pis(stack.nodes))
    if not longhorn:
        return "local-path"
    return "longhorn-encrypted" if stack.storage.ainur.encrypted else "longhorn"


def may_have_run_clear(ainur: Any) -> bool:
    """Whether the deployed Ainur of the last deployment may have run k3s without secrets encryption, after a disable
    that left k3s's config identity-first on the valar: its output does not say it ran with it. The `up` that turns it
    on asks the valar (plans.k3s.secrets_on_script). The output records what the stack asked, not what ran: each valar's
    join checks k3s's own config before it drops the flag (plans.k3s.secrets_guard)."""
    if not isinstance(ainur, Mapping) or not ainur.get("k3sVersion"):
        return False
    return ainur.get("secretsEncryption") is not True


# The class of the Ainur's own claims where the last deployment's outputs did not record it (`headscaleClass`): Longhorn
# ran or not, as the `storage` output's classes say (plans.storage.storage_classes lists the Ainur's only with GitOps,
# and `longhorn` among them only with a Pi's data disk: the two conditions of state_class), else as the netbooted roots'
# class says (`rootsClass` is `pi-roots` exactly where Longhorn runs, recorded while maiar netboot). Whether Longhorn's
# was the encrypted class nothing recorded before `headscaleClass`: LONGHORN stands for either.
LONGHORN = "longhorn or longhorn-encrypted"


def _ran_longhorn(ainur: Mapping[str, Any], storage_output: Any) -> bool | None:
    """Whether the last deployment ran Longhorn on the Ainur, as its outputs say; None when none says."""
    classes = storage_output.get("classes") if isinstance(storage_output, Mapping) else None
    if isinstance(classes, Mapping):
        own = classes.get("ainur")
        return isinstance(own, Mapping) and "longhorn" in own
    roots = ainur.get("rootsClass")
    return None if roots not in ("pi-roots", "local-path") else roots == "pi-roots"


def _ran_gitops(ainur: Mapping[str, Any], storage_output: Any) -> bool | None:
    """Whether the last deployment ran GitOps, as its outputs say: the `storage` output lists the Ainur's classes only
    with it; a Pi recorded among `longhornPis` while the roots were on local-path ran without it. None when none says."""
    classes = storage_output.get("classes") if isinstance(storage_output, Mapping) else None
    if isinstance(classes, Mapping):
        return "ainur" in classes
    if ainur.get("rootsClass") == "local-path" and ainur.get("longhornPis"):
        return False
    return None


def _headscale_class(stack: StackConfig, ainur: Any, storage_output: Any = None) -> list[Problem]:
    """Headscale's state claim is protected and a claim's class cannot change: a change of the Ainur's claims' class
    (Longhorn coming or going, `storage.ainur.encrypted`) replaces it, which needs it unprotected, Headscale scaled down
    and its state restored into the new claim from its backup (CLAIMS_RUNBOOK). Without `iluvatar:backup` there is
    no backup to restore: Headscale would start empty and every device join again, so the change is refused, at the key
    that made it. From outputs that did not record the class (`headscaleClass`), Longhorn coming or going is read from
    what they did record (LONGHORN); a move between Longhorn's two classes only from the record."""
    remote = stack.remote_access
    if stack.ainur is None or remote is None or remote.flavour != "headscale" or not isinstance(ainur, Mapping):
        return []
    before = ainur.get("headscaleClass")
    if not isinstance(before, str):
        ran = _ran_longhorn(ainur, storage_output)
        if ran is None:
            return []
        before = LONGHORN if ran else "local-path"
    now = state_class(stack)
    if now == before or stack.backup is not None or (before == LONGHORN and now != "local-path"):
        return []
    if "local-path" not in (before, now):
        key, value = "iluvatar:storage.ainur.encrypted", show(stack.storage.ainur.encrypted)
    elif now != "local-path":
        # Longhorn arrives: GitOps is new, or a Pi's data disk is (both are needed, state_class).
        recorded = ainur.get("longhornPis")
        pis_before = {str(n) for n in recorded} if isinstance(recorded, list) else set()
        if _ran_gitops(ainur, storage_output) is False:
            assert stack.gitops is not None
            key, value = "iluvatar:gitops", f"set (repoUrl {stack.gitops.repo_url})"
        else:
            longhorn = storage.longhorn_pis(stack.nodes)
            i, node = next(
                ((i, n) for i, n in enumerate(stack.nodes) if n in longhorn and n.name not in pis_before),
                next((i, n) for i, n in enumerate(stack.nodes) if n in longhorn),
            )
            key, value = f"iluvatar:nodes[{i}].dataDisks", "[" + ", ".join(str(d) for d in node.data_disks) + "]"
    elif stack.gitops is None:
        key, value = "iluvatar:gitops", "unset"
    else:
        key, value = "iluvatar:nodes", "with no Pi that boots from its card holding dataDisks"
    return [
        Problem(
            key,
            f"{value} moves the Ainur's claims from {before} to {now}, and Headscale's state claim (protected) cannot change "
            "class: it is replaced by an empty one, and without iluvatar:backup its state has no backup to restore from, so "
            f"Headscale would start empty and every device join again. Set it back as it was (the claims on {before}), or set "
            f"iluvatar:backup first and move the claim as {CLAIMS_RUNBOOK} says (a fresh backup, Headscale scaled down, the "
            "claim unprotected)",
        )
    ]


def roots_class(stack: StackConfig) -> str:
    """The netbooted roots' StorageClass, as plans.netboot.pi_pods.roots_class picks it (the tests hold them equal):
    Longhorn's `pi-roots` where Longhorn runs on the Ainur (GitOps and a Pi with `dataDisks`), else k3s's local-path."""
    longhorn = stack.gitops is not None and stack.ainur is not None and bool(storage.longhorn_pis(stack.nodes))
    return "pi-roots" if longhorn else "local-path"


def _roots_class(stack: StackConfig, ainur: Any, dnsmasq_conf: Any = None) -> list[Problem]:
    """Review 41-6 M3: the roots' class follows Longhorn (a card Pi gains a data disk, or loses its last), but a claim's
    `storageClassName` cannot change: pulumi-kubernetes replaces the claim, and the per-Pi claims are protected, so every
    preview would fail on "unable to replace ... marked for protection" with no word of why. Refused while a Pi the last
    deployment netbooted still netboots (its claim is the program's), naming the key that changed the class, as the user
    wrote it, and the runbook that moves the roots. From outputs that did not record the class (`rootsClass`), nothing
    to compare."""
    if stack.ainur is None or not isinstance(ainur, Mapping):
        return []
    before, now = ainur.get("rootsClass"), roots_class(stack)
    if not isinstance(before, str) or before == now:
        return []
    known = netbooted_before(ainur, dnsmasq_conf)
    nodes = ainur.get("nodes") if isinstance(ainur.get("nodes"), Mapping) else {}
    netbooted = set(nodes or {}) if known is None else known
    still = sorted(n.name for n in stack.ainur_nodes if n.boot == "netboot" and n.name in netbooted)
    if not still:
        return []
    had = set(ainur.get("longhornPis") or []) if isinstance(ainur.get("longhornPis"), list) else set()
    has = {n.name for n in storage.longhorn_pis(stack.nodes)}
    changed = [(i, n) for i, n in enumerate(stack.nodes) if n.name in had ^ has]
    claims = ", ".join(f"pi-root-{name}" for name in still)
    why = (
        f"makes the netbooted roots' StorageClass {now}, and the last deployment put {', '.join(still)}'s roots on {before} "
        f"({claims}): a claim's class cannot change and those claims are protected, so every preview would fail on their "
        "replacement."
    )
    if changed:
        i, node = changed[0]
        disks = "[" + ", ".join(str(d) for d in node.data_disks) + "]" if node.data_disks else "[] (no data disk)"
        key, value, back = f"iluvatar:nodes[{i}].dataDisks", disks, f"{node.name}'s dataDisks as they were"
    else:
        key, value, back = "iluvatar:gitops", "set" if stack.gitops is not None else "unset", "iluvatar:gitops as it was"
    return [Problem(key, f"{value} {why} Keep {back}, or move the roots to the new class first ({ROOTS_RUNBOOK})")]


# The etcd k3s embeds, where the move from 3.5 to 3.6 is safe only from etcd v3.5.26 ("if you are upgrading, make
# sure to update to v3.5.26 or later first", etcd.io/blog/2025/zombie_members_upgrade, quoted in k3s-io/k3s#13493):
# - release-1.33 took etcd v3.5.26 in k3s-io/k3s#13493 (merged 2026-01-23), after v1.33.6+k3s1, which runs an older
#   3.5 (k3s-io/k3s#13271), and moved to etcd v3.6.12 in k3s-io/k3s#14183 (opened 2026-06-03, verified on
#   v1.33.13-rc1+k3s1: "etcd-version":"3.6.12"). So v1.33.13 and later embed 3.6.
# - release-1.34 and later are on etcd 3.6 (k3s-io/k3s#13496 and #13497 bump them from 3.6.x to v3.6.7).
# - The stop: v1.33.12+k3s1, the last 1.33 release before #14183, cut after #13493. Which tag first carried v3.5.26
#   (v1.33.8 to v1.33.12) is not established here (no k3s source or release notes were readable), so the rule asks for
#   v1.33.12 from every older release; its etcd being v3.5.26 or later is inferred from those two PRs' dates, not read
#   from its go.mod.
K3S_ETCD_STOP = (1, 33, 12)
K3S_ETCD_STOP_RELEASE = "v1.33.12+k3s1"


def k3s_etcd_3_6(version: str) -> bool:
    """Whether a k3s release embeds etcd 3.6 (above): v1.33.13 and later."""
    return k3s_release(version) >= (1, 33, 13)


# Each chart's version key, by its name in the output's `charts`.
CHARTS = {"cilium": ("iluvatar:arda.cilium.version", "Cilium"), "argocd": ("iluvatar:gitops.argocd.version", "Argo CD")}


def chart_versions(stack: StackConfig) -> dict[str, str]:
    """The charts a deployment of `stack` installs, by their key in CHARTS, at the versions the stack writes: what `up`
    records as arda.charts (plans.rollout.arda_state) and what the next preview compares with it."""
    return {"cilium": stack.arda.cilium.version, **({"argocd": stack.gitops.argocd.version} if stack.gitops is not None else {})}


def _charts(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """A chart Iluvatar installs does not go back to an older version: neither chart's upgrade path runs backwards
    (Cilium's CRDs and agent state, Argo CD's CRDs are left as the newer release wrote them). Cilium goes forward one
    minor at a time: its upgrade guide tests no other path ("The only tested rollback and upgrade path is between
    consecutive minor releases. Always perform rollbacks and upgrades between one minor release at a time",
    Documentation/operations/upgrade-warning.rst at v1.20.2), and each minor's upgrade notes migrate the agents' state
    from the one before; the next minor's release is stacks.releases.CILIUM_NEWEST's."""
    before = deployed.output.get("charts")
    now = chart_versions(stack)
    if not isinstance(before, Mapping):
        return []
    out: list[Problem] = []
    for chart, version in now.items():
        was = before.get(chart)
        key, name = CHARTS[chart]
        if isinstance(was, str) and release(version) < release(was):
            out.append(Problem(key, f"{version} is older than {was}, which runs; {name}'s chart is not rolled back: keep {was} or a newer one"))
        elif chart == "cilium" and isinstance(was, str) and _skips_a_minor(version, was):
            step = releases.next_minor_release(was, releases.CILIUM_NEWEST)
            out.append(
                Problem(
                    key,
                    f"{version} skips a minor: Arda runs Cilium {was}, and Cilium upgrades one minor at a time (its upgrade guide: "
                    f"the only tested upgrade and rollback path is between consecutive minor releases); write {step} first, "
                    f"`pulumi up`, then {version} (docs/day2.md#chart-versions)",
                )
            )
    return out


def _skips_a_minor(version: str, was: str) -> bool:
    """Whether `version` is past the minor after `was`'s, in the same major (Cilium has had no other)."""
    new, old = releases.minor_of(version), releases.minor_of(was)
    return new[0] == old[0] and new[1] > old[1] + 1


def warnings(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """What the checks against the last deployment could not check, said rather than passed over: a deployment whose
    `arda` output records no `charts` (written before the program recorded the releases it installs), or records none
    (or null) for a chart it installed (every deployment of this program records each one: plans.rollout.state, so the
    outputs were edited or cut), leaves _charts nothing to compare, and a chart taken back to an older release (or
    Cilium's across a minor) would go through. A null part reads as a missing one, as _mistyped and _lacked read them.
    Argo CD's is not expected when the last deployment ran no GitOps (DeployedArda.gitops): `up` installs it new. A
    warning, not a refusal: the releases running can be read on Arda, and the `up` records them for every later change.
    And Argo CD's chart across its majors (_argocd_majors), and a Talos roll back within the minor (_talos_rolled_back)."""
    if not deployed.deployed:
        return []
    charts = deployed.output.get("charts")
    recorded: Mapping[str, Any] = charts if isinstance(charts, Mapping) else {}
    now = chart_versions(stack)
    out = _argocd_majors(stack, recorded)
    for chart, version in now.items():
        if isinstance(recorded.get(chart), str) or (isinstance(charts, Mapping) and chart == "argocd" and not deployed.gitops):
            continue
        key, name = CHARTS[chart]
        if chart == "cilium":
            # The minor rule too: a release older than the minor before this one's is more than one minor behind.
            major, minor = releases.minor_of(version)
            rule = "is not rolled back, nor upgraded across a minor"
            check = f"not newer than {version} (if it is, write that release or a newer one)"
            # A .0 minor has no minor before it within its major to name: the newer-than check alone is said.
            check += f", nor older than {major}.{minor - 1} (if it is, write its next minor's release first)" if minor > 0 else ""
        else:
            rule, check = "is not rolled back", f"not newer than {version} (if it is, write that release or a newer one)"
        if isinstance(charts, Mapping):
            # Missing and null alike: the outputs as the program reads them back have a null entry dropped.
            unrecorded = (
                f"arda.charts.{chart} (every deployment of this Iluvatar records each chart it installs there: the outputs were edited or cut)"
            )
        else:
            unrecorded = "arda.charts (an older Iluvatar wrote them)"
        out.append(
            Problem(
                key,
                f"{version} could not be checked against the release running: the last deployment's outputs record no "
                f"{unrecorded}, and {name}'s chart {rule}; check with `helm list -A` "
                f"on Arda that its {name} release is {check}; the next `pulumi up` records it",
            )
        )
    return _talos_rolled_back(stack, deployed) + out


def _talos_rolled_back(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """arda.talosVersion older than the patch Arda runs, within its minor: a path `up` takes (machinery allows it below
    MaximumHostDowngradeVersion: stacks.releases.talos_path), but it undoes the fixes of the patch releases between
    (stacks.releases.undone), on every machine. A stack reverted, or checked out from an older commit, asks for it
    without meaning it: warned, with both releases, rather than rolled silently."""
    running = deployed.talos_version
    undoes = releases.undone(running, stack.arda.talos_version) if running is not None else None
    if undoes is None:
        return []
    return [
        Problem(
            TALOS,
            f"{stack.arda.talos_version} is older than {running}, which Arda runs: `up` would roll every machine back to it, one "
            f"at a time, which undoes {undoes} (Talos's patch releases carry security and bug fixes) on every machine; if the "
            f"stack was reverted or checked out from an older commit, write {running} back",
        )
    ]


# Argo CD's chart (argo-helm's argo-cd) at a new major carries breaking changes, each said under its version in the
# chart's README ("Highlighted versions provide information about additional steps that should be performed by user
# when upgrading to newer version", charts/argo-cd/README.md, Changelog, at argo-cd-10.1.1: 8.0.0, 9.0.0, 10.0.0); 8.0.0
# is the one that moves Argo CD from v2 to v3 ("In this release we upgrade the Helm chart to deploy the next major
# version of Argo CD (v3.0.0)").
ARGOCD_V3_CHART = 8
ARGOCD_NOTES = "https://github.com/argoproj/argo-helm/blob/main/charts/argo-cd/README.md#changelog"


def _argocd_majors(stack: StackConfig, charts: Mapping[str, Any]) -> list[Problem]:
    """Argo CD's chart moved across one or more of its majors: warned, naming each major's upgrade notes. Not refused:
    neither argo-helm nor Argo CD asks for one major at a time (Argo CD's upgrading overview: a release skipping minors
    reads every minor's notes between; a major "introduces backward incompatible behavior changes", with a backup of
    its settings advised), and what a major breaks is in the values a stack passes, which Iluvatar cannot read for them."""
    was = charts.get("argocd")
    if stack.gitops is None or not isinstance(was, str):
        return []
    version = stack.gitops.argocd.version
    old, new = release(was)[0], release(version)[0]
    if new <= old:
        return []
    majors = [f"{m}.0.0" for m in range(old + 1, new + 1)]
    v3 = (
        f"; {ARGOCD_V3_CHART}.0.0 moves Argo CD from v2 to v3, so Argo CD's own v2.14 to 3.0 upgrade notes and each 3.x's after "
        "it apply too (its operator manual, Upgrading), and its advice before a major is a backup of its settings"
        if old < ARGOCD_V3_CHART <= new
        else ""
    )
    return [
        Problem(
            "iluvatar:gitops.argocd.version",
            f"{version} moves Argo CD's chart across {len(majors)} major version{'s' if len(majors) > 1 else ''} from {was}, which "
            f"runs ({', '.join(majors)}): each major carries breaking changes, said under its version in the chart's changelog "
            f"({ARGOCD_NOTES}){v3}; read them and change gitops.argocd.values as they say before `pulumi up`, or move one "
            "major per `up` (docs/day2.md#chart-versions)",
        )
    ]


LOGS_SIZE, LOGS_CLASS, LOGS_CLAIM = "iluvatar:logs.size", "iluvatar:logs.storageClass", "iluvatar:logs.claimChanged"
LOGS_RUNBOOK = "docs/day2.md#the-log-stores-size-or-class"
# The class whose claims' size bounds nothing: local-path-provisioner makes a folder on the user volume, whatever the
# claim asks (plans.storage.local_path_values), and the store's own bound is logs.size (plans.logs.retention_bytes).
UNSIZED_CLASS = "local-path"


def _logs_store(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """The log store's claim (data-victoria-logs-0) is made from its StatefulSet's volumeClaimTemplates, which the API
    server refuses to change in place (Kubernetes v1.34 pkg/apis/apps/validation ValidateStatefulSetUpdate: "updates to
    statefulset spec for fields other than ... are forbidden"), and a claim that exists keeps its own size and class
    whatever the template says. It outlives the StatefulSet too (logs turned off: plans.rollout.logs_store carries its
    record forward), and a store turned on again mounts it as it is. So a change of either against the record is
    silently not made: pulumi-kubernetes v4 lists a StatefulSet's volumeClaimTemplates among its replace-on-change
    fields (forceNewProperties; version against our 4.32.0 plugin unchecked), so a running store's StatefulSet is
    replaced and the new one mounts the existing claim, and the preview's retention check would then hold for a size
    the store does not have: refused, with the runbook, unless `logs.claimChanged` says the claim was changed by hand
    while logs were off. After a logs-off `up` that failed (its outputs are written anyway, plans.rollout.logs_store)
    the record says not running while the StatefulSet may still be there: the same replacement, harmless on the
    runbook's paths, where the claim was changed by hand.
    """
    before = deployed.output.get("logsStore")
    logs = stack.logs if stack.logs is not None else Logs()
    on = logs_rules.enabled(stack.logs, stack.monitoring is not None)
    # The flag acts in the one `up` that turns logs back on (its fresh record ends it): set in an `up` that leaves them
    # off it would act on nothing yet, and a record it dropped there would leave a later re-enable, flag gone, unheld.
    if logs.claim_changed and not on:
        return [
            Problem(
                LOGS_CLAIM,
                "true, but logs stay off in this `up`: it acts only in the `up` that turns them back on, after the claim "
                f"was changed by hand; remove it here and set it in that `up`, as {LOGS_RUNBOOK} says",
            )
        ]
    if not isinstance(before, Mapping):
        return []
    # A record from before `running` was recorded was made only while the store ran.
    running = before.get("running") is not False
    if logs.claim_changed:
        if not running:
            return []
        return [
            Problem(
                LOGS_CLAIM,
                "true, but the last `up` ran the log store on its claim: it says the claim was changed by hand while logs "
                "were off, in the `up` that turns them back on, once; remove it if that `up` is done, or to change the claim "
                f"turn logs off first, without it, as {LOGS_RUNBOOK} says",
            )
        ]
    if not on:
        return []
    whose = (
        "the running log store's claim"
        if running
        else "the log store's claim, which stayed while logs were off and is mounted as it is when they come back"
    )
    out: list[Problem] = []
    chosen = logs.storage_class or storage.default_class(stack, "arda")
    was_class = before.get("storageClass")
    unsized = not running and chosen == was_class == UNSIZED_CLASS
    if isinstance(was := before.get("size"), str) and logs.size != was and not unsized:
        fix = (
            f"resize the claim first as {LOGS_RUNBOOK} says"
            if running
            else f"change the claim by hand and set claimChanged: true, as {LOGS_RUNBOOK} says"
        )
        out.append(
            Problem(LOGS_SIZE, f"{logs.size} is not {was}, the size of {whose}; it cannot be changed by the stack alone: keep {was}, or {fix}")
        )
    if isinstance(was_class, str) and chosen != was_class:
        fix = "move the store to a new claim" if running else "delete the claim and set claimChanged: true,"
        if logs.storage_class is None and stack.storage.arda.default_class is not None:
            # The class came from Arda's default: the key written is the default's, and the store keeps its class by
            # naming it.
            out.append(
                Problem(
                    "iluvatar:storage.arda.defaultClass",
                    f"{stack.storage.arda.default_class}, the class the log store's claim takes (logs.storageClass is unset), "
                    f"is not {was_class}, the class of {whose}; a claim does not move between classes: keep {was_class} as the "
                    f"default, or set logs.storageClass: {was_class}, or {fix} as {LOGS_RUNBOOK} says",
                )
            )
            return out
        written = logs.storage_class if logs.storage_class is not None else f"unset (Arda's default class is now {chosen})"
        out.append(
            Problem(
                LOGS_CLASS,
                f"{written} is not {was_class}, the class of {whose}; a claim does not move between classes: "
                f"keep {was_class}, or {fix} as {LOGS_RUNBOOK} says",
            )
        )
    return out


def _encryption(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """Encryption on for a machine that runs with its volumes in clear. Talos encrypts a volume only when it finds it
    empty: one that holds a filesystem is refused, never converted (Talos v1.13.9
    internal/app/machined/pkg/controllers/block/internal/volumes/encrypt.go:82-95, "block dev type mismatch"), so the
    machine would never mount STATE again. The way is a fresh install, one machine at a time. Each machine's output
    records the key it was installed with (plans.rollout.node_state); an output without one is a machine in clear."""
    former = former_names(stack, deployed.nodes)
    out: list[Problem] = []
    for i, node in enumerate(stack.nodes):
        if node.role not in ARDA_ROLES or not installed(node, deployed, former.get(node.name)):
            continue
        key = encryption.node_key(stack, node.board)
        was = deployed.nodes[former.get(node.name, node.name)].get("encryption")
        if was == key:
            continue
        runs = f"sealed by {was}" if was else "in clear"
        wants = f"sealed by {key}" if key else "in clear"
        out.append(
            Problem(
                f"{encryption.PATH}.enabled",
                f"{show(stack.arda.encryption.enabled)}, but nodes[{i}] ({node.name}) runs with its volumes {runs}, and Talos"
                f" never converts a volume that holds data (its volumes would not mount again {wants}); roll it, one machine at a"
                " time: move its local volumes' data off (a machine with Ceph OSDs retires them first,"
                " docs/day2.md#retiring-a-disk-or-a-machine), remove it from iluvatar:nodes and run pulumi up (its delete resets"
                " it), wipe its system disk and put it back: it installs anew (docs/layers/data.md#turning-encryption-on)",
            )
        )
    return out


ROLE_NAMES = {"valinor": "a control plane", "istari": "a worker"}


def _roles(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """An Arda machine's role is fixed while it runs: Talos takes its machine type (machine.type: controlplane, worker)
    from its config, but an applied config is validated and set with no look at the type the machine runs
    (siderolabs/talos v1.14.0-rc.1 internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go:181-320,
    ApplyConfiguration), and what a control plane runs besides a worker's services, etcd and trustd, is chosen once, at
    boot, by that type (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer_tasks.go:354-405,
    StartAllServices). So a worker made a control plane is no etcd member until a reboot starts one on a machine that
    never joined (and every talosconfig lists it as an endpoint meanwhile), and a control plane made a worker keeps its
    member in etcd's quorum while it runs none. The way is the one a machine's removal and addition already take:
    its step's delete resets it (a control plane leaves etcd first), and it installs from maintenance mode with the new
    role. A machine recorded without its role (an older output) is not read as changed: nothing says it was."""
    former = former_names(stack, deployed.nodes)
    out: list[Problem] = []
    for i, node in enumerate(stack.nodes):
        if node.role not in ARDA_ROLES or not installed(node, deployed, former.get(node.name)):
            continue
        was = deployed.nodes[former.get(node.name, node.name)].get("role")
        if was not in ROLE_NAMES or was == node.role:
            continue
        out.append(
            Problem(
                f"iluvatar:nodes[{i}].role",
                f"{node.role}, but {node.name} runs as {ROLE_NAMES[str(was)]} ({was}), and Talos does not turn one into the other"
                f" in place: what a control plane runs (etcd, trustd) is chosen when the machine boots, and a config applied to a"
                f" running machine changes its type without joining or leaving etcd; write {was} back, or change it in two runs:"
                f" remove {node.name} from iluvatar:nodes and `pulumi up` (its delete resets it, a control plane leaving etcd first;"
                " a machine with Ceph OSDs retires them first, docs/day2.md#removing-a-machine), then add it back with role"
                f" {node.role} and `pulumi up` (it installs from maintenance mode, docs/day2.md#adding-a-machine), with an odd number of"
                " control planes in each run",
            )
        )
    return out


# Talos's defaults for Arda's own networks (stacks.rules.TALOS_NETWORKS), as a deployment records them.
DEFAULT_SUBNETS = {key: [str(net)] for key, net in rules.TALOS_NETWORKS.items()}


def arda_subnets(stack: StackConfig) -> dict[str, list[str]]:
    """Arda's pod and Service subnets as Talos runs them: the last arda.patches to set each (plans.coredns reads them the
    same way), else Talos's default."""
    out = {key: list(default) for key, default in DEFAULT_SUBNETS.items()}
    for patch in stack.arda.patches:
        cluster = patch.get("cluster") if "kind" not in patch else None
        network = cluster.get("network") if isinstance(cluster, dict) else None
        for key in out:
            if isinstance(network, dict) and isinstance(network.get(key), list):
                out[key] = [str(v) for v in network[key]]
    return out


def _cluster_subnets(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """Arda's pod and Service networks are fixed when the cluster is made: a new serviceSubnets moves kube-apiserver's
    --service-cluster-ip-range and the kubelets' cluster DNS (plans.coredns: the tenth address of the new range) while
    every Service there keeps its ClusterIP, CoreDNS's among them, so pods resolve nothing; a new podSubnets leaves
    every machine's podCIDR, which kube-controller-manager never reassigns, outside the cluster's. Refused against the
    subnets the last deployment recorded (`clusterNetwork`). Outputs without them (an Iluvatar before they were
    recorded) cannot tell a stack's non-default subnets from a move, and the LAN/VLAN rules offer exactly such a move to
    a homelab whose network meets Talos's defaults: refused there unless arda.subnetsRunning says Arda runs them."""
    before = deployed.output.get("clusterNetwork")
    now = arda_subnets(stack)
    if not isinstance(before, Mapping):
        return [] if stack.arda.subnets_running else _unrecorded_subnets(stack, now)
    if stack.arda.subnets_running:
        if any(before.get(k) is None for k in now):
            # A part unrecorded (below) is what subnetsRunning is for: this `up` records it.
            return []
        return [
            Problem(
                SUBNETS_RUNNING,
                "true, but the last deployment recorded Arda's subnets (clusterNetwork), which preview compares; remove it",
            )
        ]
    # Every deployment since clusterNetwork exists writes both keys (plans.rollout.arda_state); one missing or null
    # (which `pulumi preview` reads as missing: the SDK drops nulls) recorded nothing, and reads as unrecorded.
    out: list[Problem] = _unrecorded_subnets(stack, {k: v for k, v in now.items() if before.get(k) is None})
    for key, subnets in now.items():
        was = before.get(key)
        if not isinstance(was, list) or [str(w) for w in was] == subnets:
            continue
        setter = next(
            (
                k
                for k, patch in reversed(list(enumerate(stack.arda.patches)))
                if "kind" not in patch
                and isinstance(patch.get("cluster"), dict)
                and isinstance(patch["cluster"].get("network"), dict)
                and isinstance(patch["cluster"]["network"].get(key), list)
            ),
            None,
        )
        path = f"iluvatar:arda.patches[{setter}].cluster.network.{key}" if setter is not None else "iluvatar:arda.patches"
        written = "[" + ", ".join(subnets) + "]" if setter is not None else f"sets no {key} (Talos's default {', '.join(subnets)})"
        what = "Service network" if key == "serviceSubnets" else "pod network"
        running = ", ".join(str(w) for w in was)
        back = f"write [{running}] back" if setter is not None else f"put {{cluster: {{network: {{{key}: [{running}]}}}}}} back in it"
        out.append(
            Problem(
                path,
                f"{written}, but Arda runs with {running} as its {what}, which is fixed when the cluster is made (every Service "
                f"and machine keeps its address from the old one); {back}, and renumber instead what of the LAN meets it",
            )
        )
    return out


def deployed_cluster_name(deployed: DeployedArda, vips: Any = None) -> str | None:
    """The name Arda was made with: the `arda` output's `clusterName`, or, in outputs written before it was recorded,
    the one key of the `vips` output besides the Ainur's (plans.network.vip_names keys Arda's VIP by the cluster's name)."""
    recorded = deployed.output.get("clusterName")
    if isinstance(recorded, str):
        return recorded
    if isinstance(vips, Mapping):
        names = [str(k) for k in vips if k != exports.AINUR_VIP]
        if len(names) == 1:
            return names[0]
    return None


def _cluster_name(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """Arda's name is fixed once it is made. It is the Kubernetes provider's clusterIdentifier (components.kube:
    cluster_provider), and pulumi-kubernetes replaces a provider only when that changes ("the provider will only be
    replaced when clusterIdentifier changes", @pulumi/kubernetes provider ProviderArgs.clusterIdentifier), and with it
    every object it manages (Cilium, Rook-Ceph, Argo CD, VolSync: deleted and made again); every machine config's
    cluster.clusterName changes with it (components.arda), and talos-backup and the drill look under etcd/<name>,
    where none of the old snapshots are. None of that shows as a change on a machine."""
    was = deployed.output.get("clusterName")
    if not isinstance(was, str) or was == stack.arda.cluster_name:
        return []
    return [
        Problem(
            "iluvatar:arda.clusterName",
            f"{stack.arda.cluster_name}, but Arda runs as {was}, a name fixed when the cluster is made: it is the Kubernetes "
            "provider's clusterIdentifier, so a rename replaces the provider and every object on Arda (deleted and made "
            f"again), changes every machine config's cluster name, and leaves the etcd backups under etcd/{was}; write "
            f"back {was}",
        )
    ]


def deployed_arda_vip(deployed: DeployedArda, vips: Any = None) -> str | None:
    """The VIP Arda runs behind: the `vips` output keys Arda's VIP by the cluster's name (plans.network.vip_names), the
    name the `arda` output records (or the one deployed_cluster_name reads back)."""
    name = deployed_cluster_name(deployed, vips)
    if name is None or not isinstance(vips, Mapping) or not isinstance(vips.get(name), str):
        return None
    return str(vips[name])


def _arda_vip(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """Arda's VIP is fixed once the cluster is made: it is the cluster endpoint every machine config carries
    (plans.talos.cluster_endpoint: cluster.controlPlane.endpoint, on the API server's port 6443), the address the API
    server's certificate names and the one every kubeconfig and talosconfig dials. A move rewrites every machine's config
    at once while the running control planes answer on the old address only, which no machine's change shows."""
    was = deployed.output.get("vip")
    now = str(stack.arda.vip)
    if not isinstance(was, str) or was == now:
        return []
    return [
        Problem(
            "iluvatar:arda.vip",
            f"{now}, but Arda runs behind {was}, an address fixed when the cluster is made: it is the cluster endpoint "
            f"(https://{was}:6443) in every machine config, kubeconfig and talosconfig, and the API server's certificate "
            f"names it, so a move cuts every machine and client off the running control plane; write back {was}",
        )
    ]


SUBNETS_RUNNING = "iluvatar:arda.subnetsRunning"


def _subnet_setter(stack: StackConfig, key: str) -> int | None:
    """The last arda.patches entry that sets `key` (the one Talos runs)."""
    return next(
        (
            k
            for k, patch in reversed(list(enumerate(stack.arda.patches)))
            if "kind" not in patch
            and isinstance(patch.get("cluster"), dict)
            and isinstance(patch["cluster"].get("network"), dict)
            and isinstance(patch["cluster"]["network"].get(key), list)
        ),
        None,
    )


def _unrecorded_subnets(stack: StackConfig, now: Mapping[str, list[str]]) -> list[Problem]:
    out: list[Problem] = []
    for key, subnets in now.items():
        default = DEFAULT_SUBNETS[key]
        setter = _subnet_setter(stack, key)
        if subnets == default or setter is None:
            continue
        what = "Service network" if key == "serviceSubnets" else "pod network"
        check = (
            "kubectl get service kubernetes -o jsonpath='{.spec.clusterIP}' (the Service network's first address)"
            if key == "serviceSubnets"
            else "kubectl get nodes -o jsonpath='{.items[*].spec.podCIDR}' (each machine's share of the pod network)"
        )
        out.append(
            Problem(
                f"iluvatar:arda.patches[{setter}].cluster.network.{key}",
                f"[{', '.join(subnets)}], but the last deployment did not record the {what} Arda runs (an Iluvatar before "
                "it was recorded), so preview cannot tell this from a move, and a move is fixed when the cluster is made (every "
                f"Service and machine keeps its address from the old one: pods resolve nothing). Check with {check}: if Arda "
                f"runs Talos's default {', '.join(default)}, remove this and renumber instead what of the LAN meets it; if it "
                f"already runs [{', '.join(subnets)}], write {SUBNETS_RUNNING}: true for one `up`, which records it",
            )
        )
    return out


def _control_plane_addresses(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """One control plane's address per run (docs/day2.md#a-changed-address): each one's etcd member follows it, and
    two moving at once leave etcd without the quorum that lets a member's address change. A node the output records
    without an address (an output written before addresses were kept) is not read as moved: nothing says it did."""
    was = {str(v.get("mac")): str(v["ip"]) for v in deployed.nodes.values() if v.get("role") == "valinor" and v.get("ip")}
    moved = [(i, n) for i, n in enumerate(stack.nodes) if n.role == "valinor" and n.mac in was and was[n.mac] != str(n.ip)]
    if len(moved) < 2:
        return []
    j, first = moved[0]
    return [
        Problem(
            f"iluvatar:nodes[{i}].ip",
            f"{node.ip}: a second control plane's address change in one run (nodes[{j}] {first.name} moves too); change "
            f"one control plane's address per run: write {was[node.mac]} back for this one, and {node.ip} in the next "
            "(docs/day2.md#a-changed-address)",
        )
        for i, node in moved[1:]
    ]


def _arda_versions(stack: StackConfig, deployed: DeployedArda) -> list[Problem]:
    """Talos along its upgrade paths; Kubernetes one minor at a time, never back, and not in Talos's run unless the path
    across Talos minors moves it (its Kubernetes steps, each a step of its own in the chain)."""
    assert deployed.talos_version is not None
    arda = stack.arda
    problems: list[Problem] = []
    talos_moves = arda.talos_version != deployed.talos_version
    on_the_path = False
    if talos_moves:
        found, on_the_path = _talos_path(arda.talos_version, arda.kubernetes_version, deployed)
        problems += found
    before = deployed.kubernetes_version
    if before is None or arda.kubernetes_version == before:
        return problems
    ruled = len(problems)
    if not on_the_path:
        new, old = release(arda.kubernetes_version), release(before)
        if (back := _kubernetes_back(stack, deployed)) is not None:
            problems.append(back)
        elif new[:2] > (old[0], old[1] + 1):
            problems.append(
                Problem(
                    KUBERNETES,
                    f"{arda.kubernetes_version} skips a minor: Arda runs {before}, and Kubernetes upgrades one minor at a time (v{old[0]}.{old[1] + 1} first)",
                )
            )
        elif talos_moves:
            problems.append(
                Problem(
                    KUBERNETES,
                    f"changes from {before} to {arda.kubernetes_version} in the same run as arda.talosVersion ({deployed.talos_version} to "
                    f"{arda.talos_version}); upgrade Talos first, then Kubernetes: keep {before} for this run, and write "
                    f"{arda.kubernetes_version} in the next (docs/day2.md#upgrading-kubernetes)",
                )
            )
    kubernetes_refused = len(problems) > ruled
    if not kubernetes_refused and (leaving := leaving_control_planes(stack, deployed)):
        # The upgrade moves the machines in the inventory only (plans.bringup.running_machines): a control plane leaving
        # in the same run keeps the old API server, in the cluster until its reset, while every kubelet goes past it.
        names = ", ".join(leaving)
        problems.append(
            Problem(
                KUBERNETES,
                f"changes from {before} to {arda.kubernetes_version} in the same run as control plane(s) {names} leave the inventory: "
                f"the upgrade moves only the machines in it, so {names} would serve the API at {before} while the kubelets go to "
                f"{arda.kubernetes_version}; take {names} out first (one pulumi up, keeping {before}), then write {arda.kubernetes_version} "
                "(docs/day2.md#upgrading-kubernetes)",
            )
        )
    return problems


def path_of(stack: StackConfig, deployed: DeployedArda) -> list[releases.Hop]:
    """The steps this run takes across Talos minors (stacks.releases.talos_path): the Talos rolls, and the Kubernetes
    upgrades between them where a minor needs one; the last is the machines' own steps. Empty when Talos does not move
    or the path is refused (check says why)."""
    if not deployed.deployed or deployed.talos_version in (None, stack.arda.talos_version):
        return []
    assert deployed.talos_version is not None
    found, _ = _talos_path(stack.arda.talos_version, stack.arda.kubernetes_version, deployed)
    if found:
        return []
    return releases.talos_path(
        deployed.talos_version, deployed.kubernetes_version or stack.arda.kubernetes_version, stack.arda.talos_version, stack.arda.kubernetes_version
    )


def _talos_path(target: str, kubernetes: str, deployed: DeployedArda) -> tuple[list[Problem], bool]:
    """A Talos change as a path of rolls, each one machinery allows, with Kubernetes moved on the way where a minor
    needs it; refused when there is none, or when the stack's Kubernetes is not where the path's Kubernetes steps end
    (a minor beyond is a run of its own, after the path). Also whether the path moves Kubernetes (the stack's
    Kubernetes change is then its last Kubernetes step, not a run of its own)."""
    assert deployed.talos_version is not None
    if refused := _talos_no_path(target, kubernetes, deployed):
        return refused, False
    hops = releases.talos_path(deployed.talos_version, deployed.kubernetes_version or kubernetes, target, kubernetes)
    # Each roll of the path is one machinery allows (talos_upgrade_problem): every minor of the table installs over the
    # releases of the two minors before it and below the two after, and a path rolls one minor at a time, so no roll of
    # it is refused; tests/stacks/test_day2.py holds every path over the table's releases to that rule.
    steps = releases.kubernetes_steps(hops)
    if not steps or steps[-1] == kubernetes:
        return [], bool(steps)
    last = releases.show(releases.minor_of(steps[-1]))
    return [
        Problem(
            KUBERNETES,
            f"{kubernetes}: the path from Talos {deployed.talos_version} to {target} moves Kubernetes to {last} on the way "
            f"({releases.describe_path(hops)}), and a minor past what the path needs is a run of its own, after it (Talos first, "
            f"then Kubernetes): set arda.kubernetesVersion to a {last} release for this run (e.g. {steps[-1]}), then {kubernetes} "
            "in the next (docs/day2.md#across-talos-minors)",
        )
    ], True


def _talos_no_path(target: str, kubernetes: str, deployed: DeployedArda) -> list[Problem]:
    """Talos `target` with no path from what Arda runs (stacks.releases.talos_path's PathError), as check refuses it. A
    patch back within the running minor is a path: one roll, which machinery allows below MaximumHostDowngradeVersion."""
    assert deployed.talos_version is not None
    try:
        releases.talos_path(deployed.talos_version, deployed.kubernetes_version or kubernetes, target, kubernetes)
    except releases.PathError as e:
        fix = _path_fix(target, deployed.talos_version)
        return [Problem(TALOS, f"{target} cannot be rolled out: {e}{fix} (docs/day2.md#across-talos-minors)")]
    return []


def _kubernetes_back(stack: StackConfig, deployed: DeployedArda) -> Problem | None:
    """Kubernetes set back: refused in every run (docs/day2.md#upgrading-kubernetes), so no series of runs makes it."""
    before = deployed.kubernetes_version
    if before is None or release(stack.arda.kubernetes_version) >= release(before):
        return None
    return Problem(KUBERNETES, f"{stack.arda.kubernetes_version} is older than {before}, which Arda runs; Kubernetes cannot be downgraded")


def _path_fix(target: str, running: str) -> str:
    """What to write where no path leads from the Talos Arda runs to `target` and stacks.releases.talos_path's reason
    does not already say it: the running release back for a minor rolled back. (A running minor older or newer than the
    table's is said with its way out by talos_path itself; the other reasons are Kubernetes releases no Talos on the
    way runs, which the static rules refuse first.)"""
    minor = releases.minor_of(running)
    if releases.TALOS_MINORS[0].minor <= minor <= releases.TALOS_MINORS[-1].minor and releases.minor_of(target) < minor:
        return f"; write {running} back, or a newer release"
    return ""


def leaving_control_planes(stack: StackConfig, deployed: DeployedArda) -> list[str]:
    """The control planes the last deployment ran that this inventory no longer has (a renamed one, same MAC, stays)."""
    macs = {n.mac for n in stack.nodes}
    names = {n.name for n in stack.nodes}
    return sorted(
        name for name, entry in deployed.nodes.items() if entry.get("role") == "valinor" and name not in names and str(entry.get("mac")) not in macs
    )
