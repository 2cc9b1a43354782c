"""Storage config: what the inventory's data disks become, and the rules that keep their data safe.

Arda's `dataDisks` become Rook-Ceph OSDs (one CephCluster, explicit nodes and devices); every Arda
machine gets a node-local volume on its system disk; the Pis' data disk is Longhorn's; an optional
NFS export becomes a StorageClass. `iluvatar:storage` (`stacks.model.Storage`) holds the few
settings: each cluster's default StorageClass, Ceph's replication and CephFS, local volumes, NFS.

Two kinds of rule live here, each naming its config path:

- `check`: the stack alone (enough OSD hosts for the replication size, a default class the cluster
  has, Kubernetes new enough for Rook, an NFS server the plan can resolve, what `retire` may name);
- `check_removals`: the stack against the last deployment's OSDs (the stack output `storage`,
  read back by `stacks.pulumi_source`): a disk or a machine that held OSDs may leave the inventory
  only after a deployment that retired it, so no OSD ever disappears without Ceph moving its data.

The facts both the rules and `plans.storage` need (which hosts hold OSDs, the replication size)
are computed here once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from stacks import releases
from stacks.boards import AINUR_ROLES, ARDA_ROLES
from stacks.disk_ids import by_id_has_serial, by_id_has_wwid
from stacks.errors import Problem
from stacks.model import Ainur, Arda, DiskSelector, Network, Node, StackConfig, Storage
from stacks.reach import Clients, unreachable

STORAGE = "iluvatar:storage"
NODES = "iluvatar:nodes"
# Ceph's own default pool size: three copies survive any two lost disks' worth of one copy each.
DEFAULT_REPLICAS = 3
RUNBOOK = "docs/day2.md#retiring-a-disk-or-a-machine"


@dataclass(frozen=True)
class OsdHost:
    """An Arda machine whose data disks Ceph uses: `devices` run OSDs, `retiring` are being emptied."""

    name: str
    devices: tuple[str, ...]
    retiring: tuple[str, ...]


def osd_hosts(nodes: Iterable[Node]) -> list[OsdHost]:
    """Every Arda machine with data disks, in inventory order, split into active and retiring disks."""
    hosts = []
    for node in nodes:
        if node.role not in ARDA_ROLES or not node.data_disks:
            continue
        retiring = node.retired_disks
        hosts.append(OsdHost(node.name, tuple(d for d in node.data_disks if d not in retiring), tuple(retiring)))
    return hosts


def active_hosts(nodes: Iterable[Node]) -> list[OsdHost]:
    """The OSD hosts that keep at least one disk: where Ceph places copies from now on."""
    return [h for h in osd_hosts(nodes) if h.devices]


def replicas(storage: Storage) -> int:
    return storage.arda.ceph.replicas or DEFAULT_REPLICAS


def longhorn_pis(nodes: Iterable[Node]) -> list[Node]:
    """The Pis whose first data disk cloud-init formats for Longhorn. Never a netbooted maia: Longhorn's manager, whose
    account reads every Secret and makes privileged pods cluster-wide, would run there for a kubelet whose credentials
    the maia's NFS root exposes to the LAN (docs/security.md); the maia's taint keeps it off (plans.k3s.NETBOOT_TAINT)."""
    return [n for n in nodes if n.role in AINUR_ROLES and n.data_disks and n.boot != "netboot"]


def arda_classes(stack: StackConfig) -> list[str]:
    """Arda's StorageClasses, the default candidates first: Ceph's, then local volumes, then NFS."""
    return _arda_classes(stack.storage, stack.nodes)


def _arda_classes(storage: Storage, nodes: Sequence[Node]) -> list[str]:
    classes = []
    if osd_hosts(nodes):
        classes.append("ceph-block")
        if storage.arda.ceph.filesystem:
            classes.append("ceph-filesystem")
    if storage.arda.local.enabled:
        classes.append("local-path")
    if storage.nfs is not None:
        classes.append("nfs")
    return classes


def ainur_classes(stack: StackConfig) -> list[str]:
    """The Ainur's StorageClasses: Longhorn where a Pi has a data disk; k3s's local-path unless Longhorn is the default."""
    return _ainur_classes(stack.storage, stack.nodes)


def _ainur_classes(storage: Storage, nodes: Sequence[Node]) -> list[str]:
    longhorn = ["longhorn"] if longhorn_pis(nodes) else []
    default = storage.ainur.default_class or (longhorn or ["local-path"])[0]
    # k3s's own local-path addon marks its class default; with Longhorn the default, k3s runs without it.
    return longhorn if default == "longhorn" and longhorn else [*longhorn, "local-path"]


def default_class(stack: StackConfig, cluster: str) -> str | None:
    """The one default StorageClass of a cluster (None: the cluster has no StorageClass)."""
    if cluster == "arda":
        classes = arda_classes(stack)
        return stack.storage.arda.default_class or (classes[0] if classes else None)
    if stack.ainur is None:
        return None
    return stack.storage.ainur.default_class or ainur_classes(stack)[0]


# --- Rules on the stack alone ------------------------------------------------------------------


def check(
    storage: Storage | None,
    nodes: Sequence[tuple[int, Node]],
    nodes_complete: bool,
    arda: Arda | None,
    ainur: Ainur | None,
    ainur_set: bool,
    network: Network | None,
    gitops_set: bool = True,
) -> list[Problem]:
    """Every storage rule that needs only the stack; `storage` is None when the section is broken.

    Ceph's rules apply only when Ceph is installed, which needs GitOps (`gitops_set`): without it
    the data disks stay as they are, whatever their count.
    """
    problems = list(_disks(nodes))
    if storage is None:
        return problems
    if nodes_complete:
        inventory = [n for _, n in nodes]
        if gitops_set:
            problems += _ceph(storage, inventory, arda)
        problems += _arda_default(storage, inventory)
        problems += _ainur(storage, inventory, ainur, ainur_set)
        if ainur is not None:
            problems += _netbooted_roots(nodes, gitops_set)
    if storage.nfs is not None:
        problems += _nfs(storage.nfs.server, nodes, arda, ainur, network)
        problems += _mount_options(storage.nfs.mount_options)
        problems += _mount_values(storage.nfs.mount_options)
    return problems


# The NFS client's options that set one thing each, as the kernel's NFS option table declares them (torvalds/linux
# fs/nfs/fs_context.c at 0961f0c0, nfs_fs_parameters: fsparam_flag_no for `x`/`nox`, and nfs_fs_context_parse_param,
# which sets or clears one flag per option as each is read), with mount's own VFS flags (mount(8), FILESYSTEM-
# INDEPENDENT MOUNT OPTIONS): an option and its `no` form, or the other of a pair, set the same thing.
_NEGATABLE = frozenset(
    {"ac", "acl", "cto", "fsc", "lock", "migration", "posix", "rdirplus", "resvport", "sharecache"}
    | {"atime", "diratime", "relatime", "strictatime", "exec", "suid", "dev", "lazytime", "iversion", "mand"}
)
_PAIRS = {"ro": "rw", "rw": "rw", "sync": "sync", "async": "sync", "tcp": "proto", "udp": "proto", "rdma": "proto"}
# The recovery on a timeout: hard retries for ever; soft and softerr fail the request (Opt_hard clears the soft flags,
# Opt_soft and Opt_softerr set theirs, in nfs_fs_context_parse_param).
_RECOVERY = frozenset({"hard", "soft", "softerr"})
# The version options (v4.1, vers=4.1, nfsvers=4.1: Opt_v and Opt_vers both call nfs_parse_version_string).
_VERSION_FLAGS = re.compile(r"^v(2|3|4|4\.[0-2])$")
# sec= adds flavours to a list (nfs_auth_info_add), so a second sec= adds, never undoes the first.
_ADDING = frozenset({"sec"})
# Declared fs_param_deprecated in nfs_fs_parameters: the kernel warns and sets nothing.
_IGNORED = frozenset({"intr", "nointr"})
# Options the kernel declares with no `no` form (fsparam_flag, not fsparam_flag_no): `nosoft` is no option, and fs_parse
# refuses an unknown one, failing the mount.
_NO_NO_FORM = frozenset({"hard", "soft", "softerr", "tcp", "udp", "rdma", "sync", "async", "ro", "rw"})
# lookupcache's values as nfs_param_enums_lookupcache maps them: pos and positive are the one constant.
_LOOKUPCACHE = {"pos": "positive"}


def _setting(option: str) -> tuple[str, str] | None:
    """What one mount option sets, and to what: (setting, value), or None for an option no later one undoes."""
    name, eq, value = option.partition("=")
    if name in _IGNORED:
        return None
    if eq:
        if name in _ADDING:
            return None
        if name in ("vers", "nfsvers"):
            return ("vers", value)
        if name == "proto":
            return ("proto", value)
        if name == "lookupcache":
            return (name, _LOOKUPCACHE.get(value, value))
        if name == "fsc":
            # Opt_fscache with a value sets FSCACHE as the bare flag does, and a tag.
            return ("fsc", f"fsc={value}")
        return (name, value)
    if name in _RECOVERY:
        return ("hard", name)
    if (version := _VERSION_FLAGS.match(name)) is not None:
        return ("vers", version.group(1))
    if name in _PAIRS:
        return (_PAIRS[name], name)
    if name in _NEGATABLE:
        return (name, name)
    if name.startswith("no") and name[2:] in _NEGATABLE:
        return (name[2:], name)
    return None


def _unknown(option: str) -> str | None:
    """Why the kernel refuses an option it would otherwise read: its name in another case (fs_lookup_key compares names
    exactly, and nfs_fs_parameters' are lower case), or the `no` form of an option that has none; or None."""
    name = option.partition("=")[0]
    lower = name.lower()
    known = lower in _VALUED if "=" in option else _setting(lower) is not None
    if name != lower and known:
        return f"the kernel reads option names as written and knows {lower}, not {name}; write {option.replace(name, lower, 1)}"
    if lower.startswith("no") and lower[2:] in _NO_NO_FORM:
        return f"{lower[2:]} has no `no` form among the kernel's NFS options; remove it"
    return None


def _consistent(key: str, earlier: str, later: str) -> bool:
    """Whether a later option leaves what an earlier one set: the same value; vers=4 after a 4.x (Opt_vers_4 sets only
    the major version and keeps the minor one, nfs_parse_version_string); fsc=<tag> after fsc (Opt_fscache sets FSCACHE
    either way, and the tag; the bare flag after a tag clears the tag)."""
    a, b = earlier.lower(), later.lower()
    if a == b:
        return True
    if key == "vers" and b == "4" and a.startswith("4."):
        return True
    return key == "fsc" and a == "fsc" and b.startswith("fsc=")


# The kernel's NFS options that take a value (nfs_fs_parameters' fsparam_u32, fsparam_string, fsparam_enum), with
# mount's own: a name in another case than these is refused (`_unknown`).
_VALUED = frozenset(
    {"vers", "nfsvers", "proto", "sec", "lookupcache", "fsc", "local_lock", "timeo", "retrans", "rsize", "wsize", "bsize"}
    | {"port", "mountport", "mountproto", "mountvers", "mounthost", "addr", "clientaddr", "mountaddr", "namlen", "nconnect"}
    | {"max_connect", "minorversion", "acregmin", "acregmax", "acdirmin", "acdirmax", "actimeo", "retry", "write", "xprtsec"}
)


def _mount_options(options: Sequence[str]) -> Iterator[Problem]:
    """The NFS class's mount options: `soft` or `softerr`, and a later option that undoes an earlier one. The list is
    joined into one -o (stacks.model._mount_option) and the kernel applies the options in order, each setting its
    flag or value as it is read (nfs_fs_context_parse_param), so the later one wins and the earlier is dead: written
    after `hard`, `soft` mounts soft."""
    path = f"{STORAGE}.nfs.mountOptions"
    seen: dict[str, tuple[int, str, str]] = {}
    for k, option in enumerate(options):
        if (why := _unknown(option)) is not None:
            yield Problem(f"{path}[{k}]", f"{option} is no NFS option, so the mount fails: {why}")
            continue
        setting = _setting(option)
        if setting is None:
            continue
        key, value = setting
        if key == "hard" and value != "hard":
            # nfs(5), soft / hard: "NB: A so-called "soft" timeout can cause silent data corruption in certain cases.
            # As such, use the soft option only when client responsiveness is more important than data integrity."
            yield Problem(
                f"{path}[{k}]",
                f"{option} fails an NFS request with an I/O error once its retransmissions time out, and nfs(5) warns that a soft "
                "timeout can cause silent data corruption: a database on the class would be left half-written whenever the NAS "
                "reboots, where hard (Iluvatar's default) makes I/O wait until it answers; remove it",
            )
        elif key == "local_lock" and "lock" in seen and seen["lock"][2] == "nolock" and value != "all":
            # Opt_lock negated sets NONLM and both LOCAL_ flags; local_lock=<value> then sets the LOCAL_ flags anew
            # (nfs_fs_context_parse_param), while NONLM stays: the client asks no lock server.
            j, earlier, _ = seen["lock"]
            yield Problem(
                f"{path}[{k}]",
                f"{option} undoes part of mountOptions[{j}] {earlier}: nolock also makes every lock local to the client "
                f"(local_lock=all, nfs(5)), and the kernel applies the options in order, so {option} takes locks off the client "
                f"while nolock keeps them from the server; keep the one you mean and remove the other",
            )
        elif key in seen and not _consistent(key, seen[key][2], value):
            j, earlier, _ = seen[key]
            yield Problem(
                f"{path}[{k}]",
                f"{option} undoes mountOptions[{j}] {earlier}: the options are joined into one -o and the kernel applies them in "
                f"order, so the later one wins and {earlier} is dead; keep the one you mean and remove the other",
            )
        seen[key] = (k, option, value)


def _node(i: int, field: str) -> str:
    return f"{NODES}[{i}].{field}"


def _disks(nodes: Sequence[tuple[int, Node]]) -> Iterator[Problem]:
    """What `retire` may name, and one Longhorn disk per Pi."""
    for i, node in nodes:
        if node.role in AINUR_ROLES:
            for d, disk in enumerate(node.data_disks[1:], start=1):
                yield Problem(
                    _node(i, f"dataDisks[{d}]"),
                    f"{disk}: a Pi gives Longhorn one data disk, dataDisks[0] ({node.data_disks[0]}, formatted as XFS "
                    "at /var/lib/longhorn); remove this one",
                )
        if node.retire is False:
            continue
        if node.role not in ARDA_ROLES:
            yield Problem(_node(i, "retire"), f"{node.name} is {node.role}; retire takes Ceph OSDs out, and only Arda machines run them")
        elif not node.data_disks:
            yield Problem(_node(i, "retire"), f"{node.name} has no dataDisks, so no Ceph OSDs to retire; remove retire")
        elif not isinstance(node.retire, bool):
            seen: set[str] = set()
            for k, disk in enumerate(node.retire):
                if disk not in node.data_disks:
                    yield Problem(_node(i, f"retire[{k}]"), f"{disk} is not one of {node.name}'s dataDisks ({', '.join(node.data_disks)})")
                elif disk in seen:
                    yield Problem(_node(i, f"retire[{k}]"), f"{disk} is listed twice")
                seen.add(disk)


@dataclass(frozen=True)
class _Named:
    """A disk named by what only one physical disk has: a /dev/disk/by-id/ link (`kind` "path"), or an install disk
    selector's glob-free serial or wwid."""

    i: int
    node: Node
    where: str
    kind: str  # "path", "serial" or "wwid"
    value: str

    @property
    def owner(self) -> str:
        return f"nodes[{self.i}].{self.where} ({self.node.name})"


def _named_disks(i: int, node: Node) -> Iterator[_Named]:
    selector = node.install_disk
    if isinstance(selector, DiskSelector):
        # A glob may match a disk of each machine (S649*), as Talos reads it (glob(pattern, disk.<field>),
        # v1alpha1_provider.go:1357-1406 at v1.13.9, go-glob: `*` its one wildcard, stacks.disk_ids.glob); only a value
        # with no `*` names one disk.
        for kind, value in (("serial", selector.serial), ("wwid", selector.wwid)):
            if value is not None and "*" not in value:
                yield _Named(i, node, f"installDisk.{kind}", kind, value)
    for where, disk in (("installDisk", node.install_disk), *((f"dataDisks[{d}]", x) for d, x in enumerate(node.data_disks))):
        if isinstance(disk, str) and disk.startswith("/dev/disk/by-id/"):
            yield _Named(i, node, where, "path", disk)


def _same_disk(a: _Named, b: _Named) -> bool:
    """Whether two names are one disk: the same link, serial or wwid (a wwid in any case: the kernel's is lower case,
    stacks.disk_ids), or a link udev named after the other's serial or wwid."""
    if a.kind == b.kind:
        return a.value.lower() == b.value.lower() if a.kind == "wwid" else a.value == b.value
    if "path" not in (a.kind, b.kind):
        return False
    link, selector = (a, b) if a.kind == "path" else (b, a)
    matches = by_id_has_serial if selector.kind == "serial" else by_id_has_wwid
    return matches(link.value, selector.value)


def _lost(node: Node, where: str, kind: str) -> str:
    """What is lost on `node` when the disk it names at `where` (by a selector's serial or wwid, or by a path) is not
    there: Talos's install waits for a disk its selector matches (v1alpha1_sequencer_tasks.go:1518-1536 at v1.13.9), a
    path names none; Rook makes no OSD of a device it does not find; a Pi's cloud-init formats no disk for Longhorn."""
    if where.startswith("installDisk"):
        what = "no disk its selector matches" if kind != "path" else "no such disk to install on"
        return f"Talos on {node.name} would find {what} and stop the install" if node.role in ARDA_ROLES else f"{node.name} has {what}"
    if node.role in ARDA_ROLES:
        return f"Rook would find no such disk on {node.name} and make no OSD there"
    return f"cloud-init would find no such disk on {node.name} and Longhorn would write to the card's root filesystem"


def shared_disk_names(nodes: Sequence[tuple[int, Node]]) -> Iterator[Problem]:
    """A disk named on two machines by what names one physical disk: a /dev/disk/by-id/ link, an install disk
    selector's serial or wwid, or a link carrying another machine's selector's serial or wwid. Warned, not refused:
    serials and WWNs are not unique in practice (two USB-NVMe enclosures of one make both report serial 0000000000CA
    and one lunid, truenas/middleware#19651; SSDs of one batch share a WWN, AnalogJ/scrutiny#435; HighPoint RAID members
    share a serial, storaged-project/udisks#290), and each Talos (and each Pi's cloud-init, and Rook on each machine)
    matches only the disks of its own machine, so two machines whose disks report one serial are both right as
    written. A by-id link is the same case: udev builds it from the model and that serial, or from the WWN
    (60-persistent-storage.rules), so twin disks give both machines one link name, and each machine's link is its own
    disk. What the name costs when copied from the other machine by mistake is a machine that never installs, or a data
    disk that never serves; no disk is wiped, and `talosctl get disks` on the machine tells which. The harmful case,
    an install disk selector matching a data disk of the same machine (Talos and Ceph would share one disk), is
    refused in stacks.rules. Said at the later machine's key, naming the first, with the name that says the disk
    without its serial: a selector's busPath or model, a /dev/disk/by-path/ link."""
    seen: list[_Named] = []
    for i, node in nodes:
        mine = list(_named_disks(i, node))
        for new in mine:
            first = next((e for e in seen if _same_disk(e, new)), None)
            if first is None:
                continue
            lists = (
                f"`talosctl get disks --insecure --nodes {node.ip}` lists {node.name}'s disks"
                if node.role in ARDA_ROLES
                else f"`ls -l /dev/disk/by-id/` on {node.name} lists its disks"
            )
            if new.kind == "path" and first.kind == "path":
                said = f"{new.value} is also {first.owner}"
                meant, kind = "udev names a by-id link after the disk's model and serial (or its WWN), which are meant to be one disk's own", "serial"
                has = "has that link too"
            else:
                kind = new.kind if new.kind != "path" else first.kind
                meant, has = f"a {kind} is meant to be one disk's own", "reports it too"
                if new.kind == "path":
                    said = f"{new.value} is the disk {first.owner} names by its {kind} {first.value}"
                elif first.kind == new.kind:
                    said = f"{new.value} is also {first.owner}"
                else:
                    said = f"{new.value} is the {kind} in {first.owner.removesuffix(')')}, {first.value})"
            instead = (
                "select it by busPath or model instead"
                if new.kind != "path"
                else "write its /dev/disk/by-path/ link instead, which names it by where it sits"
            )
            yield Problem(
                _node(i, new.where),
                f"{said}: {meant}, so on two machines it is most likely copied from {first.node.name}, and then "
                f"{_lost(node, new.where, new.kind)}. Yet disks can share one (USB-NVMe enclosures of one make, SSDs of one "
                f"batch), and each machine finds only its own disks: if {node.name}'s disk {has}, this is right. "
                f"{lists}; to name the disk without its {kind}, {instead}",
            )
        seen += mine


def _version(text: str) -> tuple[int, int]:
    major, minor = text.removeprefix("v").split("+")[0].split(".")[:2]
    return int(major), int(minor)


def _names(hosts: Iterable[OsdHost]) -> str:
    return ", ".join(h.name for h in hosts) or "none"


def _survives(copies: int) -> str:
    if copies == 1:
        return "1 copy: data does not survive a lost disk"
    lost = {2: "one lost host", 3: "two lost hosts"}.get(copies, f"{copies - 1} lost hosts")
    return f"{copies} copies: data survives {lost}"


def _ceph(storage: Storage, nodes: Sequence[Node], arda: Arda | None) -> Iterator[Problem]:
    ceph = storage.arda.ceph
    path = f"{STORAGE}.arda.ceph"
    hosts, active = osd_hosts(nodes), active_hosts(nodes)
    if not hosts:
        for key, value in (("replicas", ceph.replicas), ("filesystem", "true" if ceph.filesystem else None)):
            if value is not None:
                yield Problem(f"{path}.{key}", f"{value}, but no Arda machine has dataDisks for Ceph; add dataDisks or remove {key}")
        return
    size = replicas(storage)
    if len(active) < size:
        retiring = [h.name for h in hosts if not h.devices]
        left = f" once {', '.join(retiring)} retire{'s' if len(retiring) == 1 else ''}" if retiring else ""
        stated = f"{size}" if ceph.replicas is not None else f"{size} (the default)"
        fits = f"set {path}.replicas: {len(active)} ({_survives(len(active))})" if active else "keep at least one machine's disks"
        yield Problem(
            f"{path}.replicas",
            f"{stated} copies need {size} OSD hosts (each copy on its own host, failureDomain: host), and Arda has "
            f"{len(active)}{left} ({_names(active)}); add dataDisks to another Arda machine, or {fits}",
        )
    # Rook v1.20's Kubernetes floor (stacks.releases.ROOK_MIN_KUBERNETES). Longhorn 1.10 needs 1.25, below the Ainur's own
    # floor of 1.30 (stacks.versions), which every k3s release a stack may write already meets: no rule for it.
    if arda is not None and _version(arda.kubernetes_version) < releases.ROOK_MIN_KUBERNETES:
        kube, row = _version(arda.kubernetes_version), releases.BY_MINOR.get(releases.minor_of(arda.talos_version))
        if row is not None and (kube[0] != 1 or not row.kubernetes[0] <= kube[1] <= row.kubernetes[1]):
            return  # a Kubernetes its Talos does not run: stacks.rules says so, with a release at this floor too
        need = ".".join(map(str, releases.ROOK_MIN_KUBERNETES))
        # The lowest release at the floor, not the newest: a running cluster moves one minor at a time
        # (stacks.day2._arda_versions refuses a skipped minor).
        lowest = releases.lowest_kubernetes(arda.talos_version)
        yield Problem(
            "iluvatar:arda.kubernetesVersion",
            f"{arda.kubernetes_version}: Rook v1.20 (Ceph on Arda's dataDisks: {_names(hosts)}) needs Kubernetes {need} or later"
            + (f"; write {lowest} (the newest {need} patch this Iluvatar knows: a cluster moves one minor at a time)" if lowest else ""),
        )


def _arda_default(storage: Storage, nodes: Sequence[Node]) -> Iterator[Problem]:
    chosen = storage.arda.default_class
    classes = _arda_classes(storage, nodes)
    if chosen is not None and chosen not in classes:
        have = ", ".join(classes) or "none"
        yield Problem(f"{STORAGE}.arda.defaultClass", f"{chosen} is not a StorageClass Arda has (it has: {have}); {_why(chosen)}")


def _why(chosen: str) -> str:
    return {
        "ceph-block": "Ceph needs an Arda machine with dataDisks",
        "ceph-filesystem": "CephFS needs storage.arda.ceph.filesystem: true and Arda dataDisks",
        "local-path": "local volumes are off (storage.arda.local.enabled: false)",
        "nfs": "NFS needs iluvatar:storage.nfs {server, share}",
    }[chosen]


def _ainur(storage: Storage, nodes: Sequence[Node], ainur: Ainur | None, ainur_set: bool) -> Iterator[Problem]:
    path = f"{STORAGE}.ainur"
    if "ainur" in storage.model_fields_set and not ainur_set:
        yield Problem(path, "is set, but iluvatar:ainur is not: there are no Pis to give storage to")
        return
    if ainur is None:
        return
    pis = longhorn_pis(nodes)
    if storage.ainur.default_class == "longhorn" and not pis:
        names = ", ".join(n.name for n in nodes if n.role in AINUR_ROLES and n.boot != "netboot") or "none"
        yield Problem(
            f"{path}.defaultClass",
            f"longhorn needs a Pi with a data disk (its dataDisks[0] is formatted for Longhorn), and no Pi that boots from its card has "
            f"one ({names}; a netbooted maia's is no Longhorn disk); add dataDisks to a Pi, or use local-path",
        )


def _netbooted_roots(nodes: Sequence[tuple[int, Node]], gitops_set: bool) -> Iterator[Problem]:
    """The netbooting maiar's roots are one volume (pi-roots, plans.netboot.pi_pods) beside the NFS server, which runs
    where the netboot pod does: on any Pi that boots from its card. With two or more such Pis a failover moves it, and
    only a replicated volume follows: Longhorn's, on the Pis' data disks. k3s's local-path volume stays on the Pi that
    died, and the NFS server, bound to the netboot pod's Pi, never starts again: every netbooted root is gone."""
    netbooted = [(i, n) for i, n in nodes if n.role in AINUR_ROLES and n.boot == "netboot"]
    servers = [n for _, n in nodes if n.role in AINUR_ROLES and n.boot != "netboot"]
    longhorn = [n for n in servers if n.data_disks]
    if netbooted and gitops_set and not longhorn and (disk := next(((i, n) for i, n in netbooted if n.data_disks), None)):
        # A netbooted maia's disk is no Longhorn disk (longhorn_pis: Longhorn's manager must not run for a kubelet whose
        # credentials its NFS root exposes), so with no card Pi's disk Longhorn would not run at all and the disk written
        # would do nothing: said, with the two ways out.
        i, node = disk
        yield Problem(
            _node(i, "dataDisks"),
            f"{node.name} netboots, and a netbooted maia's disk is no Longhorn disk (Longhorn's manager never runs where a maia's NFS "
            f"root exposes its kubelet's credentials: docs/security.md), and none of {', '.join(n.name for n in servers)}, which boot "
            "from their cards, has dataDisks, so Longhorn would not run at all: give one of them dataDisks (Longhorn formats its "
            f"dataDisks[0]), or remove {node.name}'s",
        )
        return
    if not netbooted or len(servers) < 2:
        return
    if gitops_set and len(longhorn) >= 2:
        return
    i, node = netbooted[0]
    names = ", ".join(n.name for n in servers)
    have = (
        "Longhorn is installed only with iluvatar:gitops, which this stack has not: set iluvatar:gitops"
        if not gitops_set
        else f"{len(longhorn)} of them has dataDisks ({', '.join(n.name for n in longhorn) or 'none'}): give a second one dataDisks "
        "(Longhorn formats its dataDisks[0])"
    )
    yield Problem(
        _node(i, "boot"),
        f"netboot: {node.name}'s root lives on one volume that must follow the netboot pod between the {len(servers)} Pis booting "
        f"from their cards ({names}), and only Longhorn replicates it; {have}, or set boot: disk",
    )


def zone_addresses(nodes: Sequence[tuple[int, Node]], arda: Arda | None, ainur: Ainur | None, network: Network | None) -> dict[str, IPv4Address]:
    """The names the plan's internal zone resolves that a server could have (machines, the VIPs), with their addresses."""
    names: dict[str, IPv4Address] = {n.name: n.ip for _, n in nodes}
    if ainur is not None:
        names |= {"ainur": ainur.vip, "netboot": ainur.service_ip}
    if arda is not None:
        names[arda.cluster_name] = arda.vip
    if network is not None:
        names |= {f"{name}.{network.domain}": ip for name, ip in list(names.items())}
    return names


def _nfs(server: str, nodes: Sequence[tuple[int, Node]], arda: Arda | None, ainur: Ainur | None, network: Network | None) -> Iterator[Problem]:
    path = f"{STORAGE}.nfs.server"
    zone = zone_addresses(nodes, arda, ainur, network)
    mirror = ainur.git_mirror if ainur is not None else None
    if mirror is not None and network is not None:
        # The Git mirror's name is the internal zone's too (plans.netboot.dnsmasq.dns_records: git.<domain>), though no
        # NFS server could have it: read here as the mirror's, so that it is said as what it is, with what to write.
        zone = {"git": mirror.ip, f"git.{network.domain}": mirror.ip} | zone
    pis = [n.name for _, n in nodes if n.role in AINUR_ROLES]
    # The two servers the class can mount: a NAS, by address (no resolver), or a Pi of the Ainur by its name in the zone.
    fix = "write the NAS's IPv4 address, or the name of a Pi of the Ainur that exports the share" + (f" (e.g. {pis[0]})" if pis else "")
    try:
        ip = IPv4Address(server)
    except ValueError:
        if server not in zone:
            domain = f" {network.domain}" if network is not None else ""
            yield Problem(
                path,
                f"{server} is not an address, nor a name in the internal zone{domain} (the plan resolves only its machines and VIPs, "
                "and the NFS mount must not depend on a resolver); write the NAS's IPv4 address",
            )
            return
        ip = zone[server]
        # By name, a VIP of the Ainur (ainur, netboot): kube-vip's address for k3s's API or the netboot services, where
        # no NFS server of the class's answers (the same address written as itself is refused by stacks.addresses).
        ainur_vips = (
            {} if ainur is None else {ainur.vip: "ainur.vip, the Ainur's API server", ainur.service_ip: "ainur.serviceIp, the netboot services"}
        )
        if mirror is not None:
            ainur_vips.setdefault(mirror.ip, "ainur.gitMirror.ip, the Git mirror")
        if ip in ainur_vips:
            yield Problem(
                path, f"{server} ({ip}) is {ainur_vips[ip]}, an address kube-vip moves between the Pis, where no NFS share is served: {fix}"
            )
            return
    # A machine of the plan may serve the class (docs/reference/stack.md), by name or by address alike: a Pi of the
    # Ainur runs Debian, which can export a share. An Arda machine runs Talos, which runs no NFS server, and Arda's VIP
    # is its API server: nothing there answers NFS. Checked here, not in stacks.addresses, whose fix would move the
    # machine.
    arda_held = {n.ip: f"nodes[{i}].ip ({n.name}), an Arda machine running Talos" for i, n in nodes if n.role in ARDA_ROLES}
    if arda is not None:
        arda_held.setdefault(arda.vip, "arda.vip, Arda's API server")
    if ip in arda_held:
        shown = server if server == str(ip) else f"{server} ({ip})"
        yield Problem(
            path,
            f"{shown} is {arda_held[ip]}, which serves no NFS: {fix}",
        )
        return
    local = network.subnets() if network is not None else []
    if (why := unreachable(server, Clients("Arda's nodes", "so no volume would mount", "give the NAS's LAN address"), local=local)) is not None:
        yield Problem(path, why)
        return
    # Inside a range the homelab lends (network.dhcpRange, the load-balancer pool) the server is refused by stacks.addresses,
    # which checks every device the stack names against every range.


def nfs_address(stack: StackConfig) -> str:
    """The NFS server as the StorageClass names it: its address (a name is resolved by the plan, here)."""
    assert stack.storage.nfs is not None
    server = stack.storage.nfs.server
    try:
        return str(IPv4Address(server))
    except ValueError:
        return str(zone_addresses(list(enumerate(stack.nodes)), stack.arda, stack.ainur, stack.network)[server])


# --- The last deployment: no OSD disappears without being retired first ---------------------------


@dataclass(frozen=True)
class Deployed:
    """What the last deployment ran Ceph on (the stack output `storage`): OSD disks and retiring disks by host."""

    osds: Mapping[str, tuple[str, ...]]
    retiring: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_output(cls, value: Any) -> Deployed:
        """The stack output as exported (plans.storage.state); an empty or missing one is a first deployment."""
        if not isinstance(value, Mapping):
            return cls({}, {})

        def disks(key: str) -> dict[str, tuple[str, ...]]:
            found = value.get(key) or {}
            if not isinstance(found, Mapping):
                # Not a config rule (scripts/rule_coverage.py): the engine's own state is malformed.
                raise TypeError(f"the last deployment's storage output has {key} = {found!r}, not a mapping of node to disks")
            return {str(node): tuple(str(d) for d in ds) for node, ds in found.items()}

        return cls(disks("cephOsds"), disks("cephRetiring"))


def check_removals(stack: StackConfig, deployed: Deployed) -> list[Problem]:
    """A disk that ran an OSD at the last deployment may leave the inventory only after a deployment retired it.

    Rook never removes an OSD whose disk leaves the CephCluster, and a machine that leaves the
    inventory is reset: its OSDs vanish with their copies. Retiring first has Ceph move every copy
    to the other hosts while the OSDs still serve (plans.storage's retire Job), so data never
    depends on the disk that goes.
    """
    index = {n.name: (i, n) for i, n in enumerate(stack.nodes)}
    problems = []
    for host, disks in sorted(deployed.osds.items()):
        gone = [d for d in disks if d not in deployed.retiring.get(host, ())]
        if host not in index or index[host][1].role not in ARDA_ROLES:
            if gone:
                problems.append(
                    Problem(
                        NODES,
                        f"{host} is no longer an Arda machine of the inventory, but it ran Ceph OSDs on {', '.join(gone)} at the last "
                        f"deployment; removing it now takes those copies with it. Put it back with retire: true, run `pulumi up`, "
                        f"wait for the Job osd-retire-{host} to complete, then remove it ({RUNBOOK})",
                    )
                )
            continue
        i, node = index[host]
        for disk in gone:
            if disk not in node.data_disks:
                problems.append(
                    Problem(
                        _node(i, "dataDisks"),
                        f"{disk} left {host}'s dataDisks, but it ran a Ceph OSD at the last deployment; removing it now takes its copies "
                        f"with it. Put it back, set retire: [{disk}] on {host}, run `pulumi up`, wait for the Job osd-retire-{host} "
                        f"to complete, then remove it ({RUNBOOK})",
                    )
                )
    return problems


# Values the kernel's NFS client refuses when it parses the options (torvalds/linux fs/nfs/fs_context.c at 0961f0c0):
# nfs_parse_version_string knows 2, 3, 4, 4.0, 4.1 and 4.2 alone ("NFS: Unsupported NFS version"); nconnect runs from 1
# to NFS_MAX_CONNECTIONS, 16 ("NFS: Value for 'nconnect' out of range"); and, Talos's kernel being built with
# CONFIG_NFS_DISABLE_UDP_SUPPORT, UDP for every version ("NFS: Unsupported transport protocol udp"). A refused option
# fails every mount of the class, after `up`.
_KERNEL_VERSIONS = ("2", "3", "4", "4.0", "4.1", "4.2")
_NFS_MAX_CONNECTIONS = 16
_MOUNT_FAILS = "so every mount of the class fails and its pods stay ContainerCreating"


def _kernel_uint(value: str) -> int | None:
    """value as the kernel reads an fsparam_u32 (fs/fs_parser.c fs_param_is_u32: kstrtouint with base 0, lib/kstrtox.c):
    an optional leading +, then 0x or 0X for hex, a leading 0 for octal, decimal otherwise; None where it fails."""
    digits = value.removeprefix("+")
    base = 10
    if digits[:2].lower() == "0x":
        digits, base = digits[2:], 16
    elif digits.startswith("0") and len(digits) > 1:
        digits, base = digits[1:], 8
    allowed = "0123456789abcdef"[:base]
    if not digits or any(c not in allowed for c in digits.lower()):
        return None
    number = int(digits, base)
    return number if number < 2**32 else None


def _mount_values(options: Sequence[str]) -> Iterator[Problem]:
    """The NFS class's mount options whose value the kernel refuses: a version it has no client for, nconnect out of
    range, UDP."""
    path = f"{STORAGE}.nfs.mountOptions"
    udp: tuple[int, str] | None = None
    for k, option in enumerate(options):
        setting = _setting(option)
        if setting is None:
            continue
        key, value = setting
        name = option.partition("=")[0]
        if key == "vers":
            if value not in _KERNEL_VERSIONS:
                yield Problem(
                    f"{path}[{k}]",
                    f"{option} is no NFS version the kernel knows: nfs_parse_version_string (fs/nfs/fs_context.c) takes "
                    f'{", ".join(_KERNEL_VERSIONS)} and fails anything else with "NFS: Unsupported NFS version", '
                    f"{_MOUNT_FAILS}; write {name}=4.2",
                )
        elif key == "nconnect":
            number = _kernel_uint(value)
            if number is None or not 1 <= number <= _NFS_MAX_CONNECTIONS:
                fix = 1 if number == 0 else _NFS_MAX_CONNECTIONS
                yield Problem(
                    f"{path}[{k}]",
                    f"{option} is out of the kernel's range: fs/nfs/fs_context.c takes nconnect from 1 to "
                    f"NFS_MAX_CONNECTIONS ({_NFS_MAX_CONNECTIONS}) and fails the mount with \"NFS: Value for 'nconnect' out "
                    f'of range" ({_MOUNT_FAILS}); write nconnect={fix}',
                )
        elif key == "proto":
            udp = (k, option) if value.lower() in ("udp", "udp6") else None
    if udp is not None:
        k, option = udp
        yield Problem(
            f"{path}[{k}]",
            f"{option} is refused by Talos's kernel whatever the NFS version: it is built with "
            "CONFIG_NFS_DISABLE_UDP_SUPPORT=y (siderolabs/pkgs v1.14.0 kernel/build/config-amd64:6750, config-arm64:9586), "
            'so nfs_server_transport_udp_invalid (fs/nfs/fs_context.c) fails the mount with "NFS: Unsupported transport '
            f'protocol udp", {_MOUNT_FAILS}; remove it (the client then uses TCP)',
        )
