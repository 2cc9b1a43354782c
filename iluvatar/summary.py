"""What `iluvatar validate` says of a valid stack: one line for each section it checked, only those the stack has.

A newcomer reads it to see that the stack means what they meant (the LAN they wrote, the machines in the clusters
they meant, each layer they turned on), so each line names the values a later step relies on, not a count alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from plans import drill as drill_plan
from plans import logs as log_plan
from plans import remote_access as remote_plan
from plans.backup import arda_etcd
from plans.storage import storage_classes
from stacks.credentials import masked_kernel_arg
from stacks.data import drills, stale_after, target_of
from stacks.data_model import AppSecret, Keep
from stacks.edge import edge_addresses
from stacks.encryption import key_of
from stacks.model import App, AppClient, AppPort, PiImage, StackConfig
from stacks.remote_access import base_domain as remote_base_domain
from stacks.storage import replicas as ceph_replicas


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _joined(items: Iterable[object]) -> str:
    return ", ".join(str(i) for i in items)


def network(stack: StackConfig) -> str:
    net = stack.network
    line = f"network: LAN {net.lan} ({net.domain}), gateway {net.gateway}, DNS {_joined(net.dns)}; DHCP {net.dhcp_range}; load balancers {net.load_balancer_pool}"
    if net.vlans:
        line += f"; {_plural(len(net.vlans), 'VLAN')}: {_joined(f'{v.name} {v.cidr} (id {v.id})' for v in net.vlans)}"
    if net.external_domain is not None:
        line += f"; public zone {net.external_domain}"
    return line


def nodes(stack: StackConfig) -> str:
    roles = Counter(n.role for n in stack.nodes)
    ainur = f"Ainur {roles['valar']} valar + {roles['maiar']} maiar" if stack.ainur else "no Ainur"
    line = f"nodes: {len(stack.nodes)} ({ainur}; Arda {roles['valinor']} valinor + {roles['istari']} istari)"
    netbooting = [n.name for n in stack.nodes if n.boot == "netboot"]
    line += f"; {_joined(netbooting)} {'boots' if len(netbooting) == 1 else 'boot'} from the network" if netbooting else ""
    on_vlans: dict[str, list[str]] = {}
    for n in stack.nodes:
        if n.vlan is not None:
            on_vlans.setdefault(n.vlan, []).append(n.name)
    return line + "".join(f"; {_joined(names)} on VLAN {vlan}" for vlan, names in on_vlans.items())


def power(stack: StackConfig) -> str | None:
    """How `up` powers each machine that says so (nodes[].power): its BMC's address and slot, or its Wake-on-LAN link."""
    bmcs: dict[str, list[str]] = {}
    woken: list[str] = []
    for n in stack.nodes:
        if n.power is None:
            continue
        if n.power.bmc is not None:
            flash = ", flashed when new" if n.power.bmc.flash else ""
            bmcs.setdefault(str(n.power.bmc.address), []).append(f"{n.name} (slot {n.power.bmc.slot}{flash})")
        elif n.power.wake_on_lan is not None:
            woken.append(f"{n.name} ({n.power.wake_on_lan.link})")
    parts = [f"through the BMC at {address}: {_joined(names)}" for address, names in bmcs.items()]
    if woken:
        parts.append(f"by Wake-on-LAN from the Ainur: {_joined(woken)}")
    return f"power: {'; '.join(parts)}" if parts else None


def ainur(stack: StackConfig) -> str | None:
    if stack.ainur is None:
        return None
    a = stack.ainur
    mode: str = a.netboot.mode
    if a.netboot.mode == "dhcp":
        mode += f", leases of {a.netboot.lease_time}"
    if "mode" not in a.netboot.model_fields_set:
        # Said offline, before the preview that refuses it against a homelab deployed in dhcp mode (stacks.netboot_mode).
        mode += ", the default, as ainur.netboot.mode is not set: a homelab whose Ainur serve its DHCP must set it to dhcp"
    if a.netboot.mode == "dhcp" and a.netboot.router_pool is None:
        # Offline, validate cannot see whether the Ainur already lend: `pulumi preview`, which reads the last
        # deployment's outputs, asks for the pool on a first deployment and on a move from proxy (stacks.netboot_mode).
        mode += "; ainur.netboot.routerPool not set: `pulumi preview` asks for it unless the Ainur already served the LAN's DHCP"
    elif a.netboot.mode == "dhcp":
        # The pool the Ainur keep their leases apart from, or the user's word that no other server's lease is held.
        pool = a.netboot.router_pool
        mode += "; routerPool none: no other DHCP server's lease held" if pool == "none" else f"; the router's pool {pool} kept apart"
    line = f"Ainur: k3s {a.k3s_version}, API VIP {a.vip}, DHCP/TFTP/HTTP/DNS at {a.service_ip} (netboot {mode})"
    if a.git_mirror is not None:
        line += f", Git mirror at {a.git_mirror.ip}"
    if a.pi_image.release != PiImage().release or any(n.boot == "netboot" for n in stack.nodes):
        # The release the netbooted Pis run is the one choice of ainur.piImage worth a word: said once a Pi boots it, or
        # when it is not the default.
        line += f"; netbooted Pis run Ubuntu {a.pi_image.release} (ainur.piImage)"
    if a.secrets_encryption:
        line += "; Secrets encrypted at rest"
    return line


def arda(stack: StackConfig) -> str:
    a = stack.arda
    line = f"Arda: {a.cluster_name}, Talos {a.talos_version}, Kubernetes {a.kubernetes_version}, API VIP {a.vip}"
    line += "; the control planes run workloads too" if a.allow_scheduling_on_control_planes else ""
    if a.encryption.enabled:
        line += f"; volumes encrypted with LUKS2 ({_keys(stack)})"
    line += f"; Cilium {a.cilium.version} {'with' if a.cilium.hubble else 'without'} Hubble"
    return line + _patches(stack) + _kernel_args(stack)


def _patched(patches: Iterable[Mapping[str, Any]]) -> str:
    """What a machine's Talos patches touch, never what they set (a patch may hold a token or a key): each v1alpha1
    patch's keys two deep (machine.kubelet, cluster.network), each config document by its kind."""
    touched: dict[str, None] = {}
    for patch in patches:
        if "kind" in patch:
            touched[f"a {patch['kind']} document"] = None
            continue
        for key, value in patch.items():
            below = [f"{key}.{sub}" for sub in value] if isinstance(value, Mapping) and value else [str(key)]
            touched.update(dict.fromkeys(below))
    return _joined(touched)


def _patches(stack: StackConfig) -> str:
    """Which machines carry Talos patches (arda.patches: every one; nodes[].talosPatches: that one) and what they touch."""
    on = [f"every machine ({_patched(stack.arda.patches)})"] if stack.arda.patches else []
    on += [f"{n.name} ({_patched(n.talos_patches)})" for n in stack.nodes if n.talos_patches]
    return f"; Talos patches on {_joined(on)}" if on else ""


def _kernel_args(stack: StackConfig) -> str:
    """The kernel arguments each board's machines boot with beside Talos's own (arda.kernelArgs), as on a command line,
    with the value of any that is or may hold a credential masked (a SideroLink join token, an inline machine config, a
    URL's path, query or fragment, stacks.credentials.masked_kernel_arg): the summary is printed on every validate, and
    CI logs keep it."""
    boards = [f"{board} boots with {' '.join(masked_kernel_arg(a) for a in args)}" for board, args in stack.arda.kernel_args.items() if args]
    return f"; {'; '.join(boards)}" if boards else ""


def _keys(stack: StackConfig) -> str:
    """How Arda's machines unlock their volumes, by board where boards differ."""
    said = {"kms": "unlocked through the Ainur's KMS", "tpm": "sealed to each machine's TPM"}
    keys = {board: str(key_of(stack.arda.encryption, board)) for board in sorted({n.board for n in stack.arda_nodes})}
    if len(set(keys.values())) == 1:
        return said.get(next(iter(keys.values())), "")
    return _joined(f"{board} {said.get(key, key)}" for board, key in keys.items())


def apps(stack: StackConfig) -> str | None:
    if not stack.apps:
        return None
    external = sum(1 for a in stack.apps if a.audience == "external")
    line = f"apps: {len(stack.apps)} ({_joined(a.name for a in stack.apps)}); {external} external"
    raw = [f"{a.name} at {a.address} ({_ports(a.ports)})" for a in stack.apps if a.ports]
    line += f"; raw ports: {'; '.join(raw)}" if raw else ""
    host = [f"{a.name} on {a.host_network.node} ({_ports(a.host_network.ports)})" for a in stack.apps if a.host_network is not None]
    line += f"; on a machine's own network: {'; '.join(host)}" if host else ""
    clients = [f"{a.name} from {_joined(_client(a, c) for c in a.clients)}" for a in stack.apps if a.clients]
    return line + (f"; pods admitted: {'; '.join(clients)}" if clients else "")


def _ports(ports: Iterable[AppPort]) -> str:
    return _joined(f"{p.port}/{p.protocol}" for p in ports)


def _client(app: App, client: AppClient) -> str:
    """A client's pods and the app's container ports the policy opens to them (plans.ports._to_ports): its own, over
    TCP, or unset, each of the app's with its protocol."""
    pods = f"pods {_joined(f'{k}={v}' for k, v in client.pods.items())} of namespace" if client.pods else "namespace"
    ports = [f"{p}/tcp" for p in client.ports] or [f"{p.container_port}/{p.protocol}" for p in app.ports]
    return f"{pods} {client.namespace} ({_joined(ports)})"


def app_secrets(stack: StackConfig) -> str | None:
    """The names of each app's secrets and where each comes from, never a value: set under iluvatar:appSecrets,
    generated by Pulumi, or another app's; and a name set there that no secret of its app reads."""
    parts = []
    for app in stack.apps:
        said = [f"{s.name} ({_source(s)})" for s in app.secrets]
        declared = {s.name for s in app.secrets}
        said += [f"{name} (set, read by none)" for name in stack.app_secrets_set.get(app.name, ()) if name not in declared]
        if said:
            parts.append(f"{app.name} {_joined(said)}")
    apps = {a.name for a in stack.apps}
    parts += [
        f"{name} {_joined(f'{n} (set, no such app)' for n in names)}" for name, names in stack.app_secrets_set.items() if name not in apps and names
    ]
    return f"app secrets: {'; '.join(parts)}" if parts else None


def _source(secret: AppSecret) -> str:
    if secret.generate is not None:
        return f"generated, {secret.generate} characters"
    return f"{secret.from_app}'s" if secret.from_app is not None else "set by you"


def edge(stack: StackConfig) -> str | None:
    """The edge matters once there is an app to route or a Cloudflare zone to serve."""
    if not stack.apps and not stack.uses_cloudflare:
        return None
    addresses = edge_addresses(stack.network.load_balancer_pool, stack.edge)
    shown = ["envoy-internal"]
    if stack.public_ingress == "cloudflare-tunnel":
        shown.append("envoy-external")
    if stack.has_lan_resolver:
        shown.append("resolver")
    names = {"resolver": "LAN resolver"}
    where = _joined(f"{names.get(k, k)} {addresses[k]}" for k in shown)
    account = f" (account {stack.cloudflare.account_id})" if stack.cloudflare is not None else ""
    return f"edge: public ingress {stack.public_ingress}, public DNS {stack.public_dns}{account}; {where}"


def gitops(stack: StackConfig) -> str | None:
    if stack.gitops is None:
        return None
    g = stack.gitops
    return f"GitOps: {g.repo_url} at {g.revision}, apps under {g.apps_path}/{' (private)' if g.private else ''}; Argo CD chart {g.argocd.version}"


def storage(stack: StackConfig) -> str | None:
    """Each cluster's StorageClasses, the default first marked: storage runs only with GitOps."""
    classes = storage_classes(stack)
    if not classes:
        return None
    nfs = stack.storage.nfs
    shown = {"nfs": f"nfs ({nfs.server}:{nfs.share})"} if nfs is not None else {}
    parts = []
    for cluster, named in classes.items():
        ordered = sorted(named.items(), key=lambda kv: not kv[1])
        listed = _joined(f"{shown.get(name, name)} (default)" if default else shown.get(name, name) for name, default in ordered)
        if cluster == "arda" and any(name.startswith("ceph-") for name in named):
            listed += f", Ceph keeping {ceph_replicas(stack.storage)} copies"
        if cluster == "ainur" and stack.storage.ainur.encrypted:
            listed += ", the Ainur's own claims on longhorn-encrypted"
        parts.append(f"{'Arda' if cluster == 'arda' else 'Ainur'} {listed or 'none'}")
    return "storage: " + "; ".join(parts)


def monitoring(stack: StackConfig) -> str | None:
    if stack.monitoring is None:
        return None
    m = stack.monitoring
    line = f"monitoring: Prometheus keeps {m.prometheus.retention} on {m.prometheus.size}"
    receiver = m.receiver.kind if m.receiver is not None else None
    if receiver is None:
        return line + "; alerts go nowhere (no receiver)"
    settings = getattr(m.receiver, receiver)
    to = settings.to if receiver == "email" else settings.url
    through = f" through {settings.smarthost}" if receiver == "email" and settings.smarthost is not None else ""
    line += f"; alerts by {receiver} to {to}{through}"
    return line + (f"; heartbeat to {m.heartbeat}" if m.heartbeat is not None else "")


def identity(stack: StackConfig) -> str | None:
    if stack.identity is None:
        return None
    i = stack.identity
    c = i.connector
    where = {"ldap": f" at {c.host}", "github": f" of orgs {_joined(c.orgs)}", "static": f" as {c.email}"}.get(c.type, "")
    return f"identity: sign-in through {c.type}{where} (Dex at {i.ip}), {_plural(len(i.groups), 'group')} bound to cluster roles"


def backup(stack: StackConfig) -> str | None:
    if stack.backup is None:
        return None
    b = stack.backup
    target = target_of(b)
    volumes = _volumes(stack)
    clusters = [name for name, on in (("Arda", arda_etcd(stack)), ("the Ainur", stack.ainur is not None)) if on]
    # k3s prunes the Ainur's snapshots to etcd.keep; talos-backup never deletes Arda's (the bucket's lifecycle does).
    kept = f"; k3s keeps the newest {b.etcd.keep}" if stack.ainur is not None else ""
    etcd = f"etcd snapshots of {' and '.join(clusters)} ({b.etcd.schedule}{kept})" if clusters else "no etcd snapshots"
    if target.kind == "nfs" and stack.ainur is not None:
        # k3s uploads the Ainur's snapshots only to S3 (plans.backup.k3s_settings): with NFS they stay where k3s takes them.
        etcd += " kept on the valar" if len(stack.by_role("valar")) == 1 else " kept on each valar"
    # Every S3 client of the stack signs for backup.region: a region the endpoint does not serve fails every upload.
    region = f" (region {b.region})" if target.kind == "s3" else ""
    return f"backup: to {target.kind.upper()} {b.target}{region}; {etcd}; {volumes}; {_drill(stack)}"


def _volumes(stack: StackConfig) -> str:
    """How many app volumes are backed up, each app's schedule, and which snapshots restic keeps, apps keeping the same
    said together."""
    backed = [(a.name, a.backup) for a in stack.apps if a.backup is not None]
    line = _plural(sum(len(b.volumes) for _, b in backed), "app volume")
    kept: dict[str, list[str]] = {}
    for name, b in backed:
        kept.setdefault(_kept(b.keep), []).append(f"{name}'s at {b.schedule}")
    return line + (f" ({'; '.join(f'{_joined(apps)}, {keep}' for keep, apps in kept.items())})" if kept else "")


def _kept(keep: Keep) -> str:
    """restic's forget policy in words: keep-last N is the newest N snapshots, keep-daily N the newest of each of the
    last N days that has one (and so for hours, weeks, months, years)."""
    periods = [(keep.hourly, "hour"), (keep.daily, "day"), (keep.weekly, "week"), (keep.monthly, "month"), (keep.yearly, "year")]
    each = [_plural(n, unit) for n, unit in periods if n is not None]
    said = [f"the newest {keep.last}"] if keep.last is not None else []
    if each:
        said.append(f"the newest of each of the last {_joined(each[:-1]) + ' and ' if len(each) > 1 else ''}{each[-1]}")
    return f"keeping {' and '.join(said)}" if said else "keep empty: restic forgets no snapshot"


def _drill(stack: StackConfig) -> str:
    b = stack.backup
    assert b is not None
    if not b.drill.enabled:
        return "no restore drill"
    if not drill_plan.enabled(stack):
        # The render makes the drills only where plans.drill.enabled says so: with monitoring, which reports them.
        return "no restore drill (it runs with iluvatar:monitoring)"
    arda, ainur = drills(b, stack.ainur is not None)
    # The KMS key's and Headscale's drills run with the drill whatever its volumes, arda and ainur say (plans.drill).
    drilled = (
        ("volumes", b.drill.volumes),
        ("Arda's etcd", arda),
        ("the Ainur's etcd", ainur),
        ("the KMS key", drill_plan.kms_drill_enabled(stack)),
        ("Headscale's state", drill_plan.headscale_drilled(stack)),
    )
    what = [name for name, on in drilled if on]
    age = stale_after(b.drill)
    bound = f"{age.days}d" if age.seconds == 0 else f"{age.days * 24 + age.seconds // 3600}h"
    return f"restore drill ({b.drill.schedule}) of {', '.join(what) or 'nothing'}, alert when none passed in {bound}"


def discovery(stack: StackConfig) -> str | None:
    if stack.discovery is None:
        return None
    d = stack.discovery
    pool = f"lends {d.pool}" if d.pool is not None else "lends from network.dhcpRange"
    arches = _joined(stack.discovery_boards)
    return f"discovery: unknown machines on {d.vlan or 'network.lan'} boot Talos ({arches}) into maintenance mode ({pool})"


def logs(stack: StackConfig) -> str | None:
    """The log store runs with monitoring; a stack that turned it off is told so, since monitoring alone would run it."""
    if stack.monitoring is None:
        return None
    if not log_plan.enabled(stack):
        return "logs: off (logs.enabled: false)"
    settings = log_plan.settings(stack)
    line = f"logs: VictoriaLogs on Arda keeps {settings.retention} on {settings.size} ({log_plan.storage_class(stack)})"
    sent = log_plan.lan_address(stack)
    return line + (f"; the Pis send to {sent}" if sent is not None else "")


def remote_access(stack: StackConfig) -> str | None:
    if stack.remote_access is None:
        return None
    r = stack.remote_access
    if r.flavour == "headscale" and r.headscale is not None:
        h = r.headscale
        relays = "Tailscale's DERP relays" if h.derp == "tailscale" else "its own DERP relay"
        server = f"Headscale at {h.url} (LAN {h.ip}, devices named under {remote_base_domain(r, stack.network)}, {relays})"
    else:
        tailnet = r.tailscale.tailnet if r.tailscale is not None else "-"
        client = r.tailscale.oauth_client_id if r.tailscale is not None else ""
        server = f"Tailscale, the tailnet of OAuth client {client}" if tailnet == "-" else f"Tailscale, tailnet {tailnet}"
        if r.tailscale is not None and r.tailscale.replace_policy:
            # Beside the server: every rule, group and grant of the tailnet's policy file is lost at the first `up` (a stack without
            # replacePolicy: true is refused, stacks.remote_access), and the summary is where the user reads what `up` will do.
            server += " (the first `up` replaces the tailnet's whole policy file with Iluvatar's: copy what it holds first)"
    groups = _joined(f"{g.group} ({'+'.join(g.reach)})" for g in r.access)
    return f"remote access: {server}; routes {_joined(remote_plan.routes(stack))}; {_plural(len(r.access), 'group')}: {groups}"


SECTIONS = (
    network,
    nodes,
    power,
    ainur,
    arda,
    discovery,
    apps,
    app_secrets,
    edge,
    gitops,
    storage,
    monitoring,
    logs,
    identity,
    backup,
    remote_access,
)


def summary(stack: StackConfig) -> list[str]:
    """One line per section the stack has, in the stack file's order."""
    return [line for section in SECTIONS if (line := section(stack)) is not None]
