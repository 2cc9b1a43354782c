"""Netboot plan: what the Ainur serve the LAN, as dnsmasq and nginx configs, iPXE scripts and
Kubernetes objects.

The Ainur's services live at one address, `ainur.serviceIp`, which kube-vip holds on whichever
Pi runs the netboot pod. dnsmasq answers DHCP (or ProxyDHCP), TFTP and DNS only while that
address is on the Pi it runs on, so two Pis never answer at once; every URL a machine fetches
names that address, never a Pi's own and never `${next-server}` (which a router may fill).

A machine's path to Talos: PXE firmware asks DHCP; dnsmasq hands known netboot MACs an iPXE
binary over TFTP; iPXE fetches `http://<serviceIp>/boot.ipxe`, which chains to the machine's own
script; that boots the Talos kernel for its board. Workers get `talos.config=` pointing at their
own config, which nginx serves only to their reserved address; control planes get none and wait
in maintenance mode for Pulumi's `ConfigurationApply`, so the cluster's CA keys never cross the LAN.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address
from typing import Any

from plans import gitops, storage, talos
from plans.k3s import KUBE_VIP_ELECTION, KUBE_VIP_IMAGE
from plans.network import gateway_addresses, plan_network
from stacks.boards import BOARDS
from stacks.model import Node, StackConfig

NAMESPACE = "netboot"
TFTP_ROOT = "/var/lib/iluvatar/tftp"
LEASES_DIR = "/var/lib/iluvatar/leases"
LEASE_FILE = f"{LEASES_DIR}/dnsmasq.leases"
HTTP_ROOT = "/usr/share/nginx/html"
# Each Pi's cache of what netbooting needs, filled by the netboot-cache DaemonSet, so the netboot
# pod starts on any Pi without the internet (after a power cut the ISP link may be the last up).
HOST_CACHE = "/var/lib/iluvatar/netboot"
DNSMASQ_IMAGE = "quay.io/poseidon/dnsmasq:v0.5.0-51-gc8a9de4"
NGINX_IMAGE = "docker.io/library/nginx:1.28.0-alpine"
CURL_IMAGE = "docker.io/curlimages/curl:8.11.1"
DEBIAN_IMAGE = "docker.io/library/debian:trixie-20250908-slim"
SEED_NAMESPACE = "argocd"
LEASES_CONFIGMAP = "dnsmasq-leases"
# How often the lease file is copied into the cluster: a lease granted less than this before its
# Pi died is the only one a moved netboot pod can forget.
LEASE_SYNC_SECONDS = 2
# The netboot pod leaves an unreachable or not-ready Pi this long after the node is marked so
# (node-monitor-grace-period, plans.k3s), instead of Kubernetes' default 300 s.
EVICTION_SECONDS = 5

# iPXE binaries, served by TFTP, from Debian's `ipxe` package at a pinned version (the first
# Debian release whose package ships an arm64 build). Name served -> (file in the package, SHA-256).
IPXE_DEBIAN_VERSION = "1.21.1+git20250501.dad20602+dfsg-1"
IPXE_FILES = {
    "undionly.kpxe": ("undionly.kpxe", "391bfe580ec9f823d046ee390765d6c389f482b9a8b9fae0f90871cd8ff57828"),
    "ipxe.efi": ("ipxe-amd64.efi", "6095eb23f4173674a3dc124a2a6d3cdeed514172793306a10d525f57b97cdc6a"),
    "ipxe-arm64.efi": ("ipxe-arm64.efi", "5369815eee98bf98b28a18af9a57207f9096a3b4e542ed3df1eb3f5b28d3d9a9"),
}
# iPXE binary per PXE firmware, and the DHCP option 93 client architectures that firmware sends
# (RFC 4578 and IANA: 7 and 9 are both x86-64 UEFI; firmware in the wild sends either).
IPXE_BINARIES = {"bios": "undionly.kpxe", "uefi-x86_64": "ipxe.efi", "uefi-arm64": "ipxe-arm64.efi"}
CLIENT_ARCH = {"bios": (0,), "uefi-x86_64": (7, 9), "uefi-arm64": (11,)}
# dnsmasq's names for those architectures in ProxyDHCP menus (pxe-service CSA).
PROXY_CSA = {0: "x86PC", 7: "X86-64_EFI", 9: "BC_EFI", 11: "ARM64_EFI"}
# Talos' kernel arguments for bare metal (Talos PXE guide).
TALOS_KERNEL_ARGS = (
    "talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 "
    "nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512"
)
GENERIC_WORKER = "generic-worker"


def mac_name(mac: str) -> str:
    """A MAC as iPXE's `${mac:hexhyp}` spells it, the key of every per-machine path."""
    return mac.replace(":", "-")


def netboot_nodes(stack: StackConfig) -> list[Node]:
    return [n for n in stack.arda_nodes if stack.boots_from_network(n)]


def config_nodes(stack: StackConfig) -> list[Node]:
    """Netboot machines that are served a machine config: workers only. A control plane's config
    holds the cluster's CA keys, so it boots into maintenance mode and Pulumi pushes its config."""
    return [n for n in netboot_nodes(stack) if n.role == "istari"]


def service_ip(stack: StackConfig) -> IPv4Address:
    assert stack.ainur is not None
    return stack.ainur.service_ip


def base_url(stack: StackConfig) -> str:
    return f"http://{service_ip(stack)}"


# --- DNS -------------------------------------------------------------------------------------


def dns_records(stack: StackConfig, extra: Iterable[tuple[str, IPv4Address]] = ()) -> list[tuple[str, IPv4Address]]:
    """The internal zone the Ainur answer for: every machine, the VIPs, the service address, the
    Git mirror, the Envoy gateways, and `extra` (name or FQDN, address) records such as the app
    hosts the edge layer adds. Sorted by name, one record per name."""
    assert stack.ainur is not None
    domain = stack.network.domain
    records: dict[str, IPv4Address] = {r.name: IPv4Address(r.value) for r in plan_network(stack).dns_records}
    records[f"netboot.{domain}"] = stack.ainur.service_ip
    if stack.ainur.git_mirror is not None:
        records[f"git.{domain}"] = stack.ainur.git_mirror.ip
    for name, ip in gateway_addresses(stack).items():
        records[f"{name}.{domain}"] = ip
    external = stack.network.external_domain
    for name, ip in extra:
        # A name under either zone is a full name (split DNS answers app hosts of the public zone too).
        full = name.rstrip(".")
        fqdn = full if any(full == z or full.endswith(f".{z}") for z in (domain, external) if z) else f"{name}.{domain}"
        if fqdn in records and records[fqdn] != ip:
            raise ValueError(f"{fqdn} is already {records[fqdn]} in the internal zone; it cannot also be {ip}")
        records[fqdn] = ip
    return sorted(records.items())


def _reverse_zones(stack: StackConfig) -> list[str]:
    """The LAN's reverse zones, answered locally so no PTR query for it leaves the house."""
    lan = stack.network.lan
    octets = min(3, -(-lan.prefixlen // 8))  # whole octets covering the LAN, at most a /24 zone each
    subnets = lan.subnets(new_prefix=max(lan.prefixlen, octets * 8))
    zones = {".".join(reversed(str(sub.network_address).split(".")[:octets])) for sub in subnets}
    return sorted(f"{z}.in-addr.arpa" for z in zones)


# --- dnsmasq ---------------------------------------------------------------------------------


def _who_boots(stack: StackConfig) -> list[str]:
    """dnsmasq tag selectors of the machines the Ainur boot: netboot MACs, and unknown ones when opted in."""
    return ["tag:netboot"] + (["tag:!known"] if stack.generic_worker is not None else [])


def dnsmasq_conf(
    stack: StackConfig, tftp_root: str = TFTP_ROOT, lease_file: str = LEASE_FILE, extra_records: Sequence[tuple[str, IPv4Address]] = ()
) -> str:
    """dnsmasq.conf: DNS for the internal zone, DHCP (or ProxyDHCP) with PXE, and TFTP for iPXE."""
    assert stack.ainur is not None
    net, nb = stack.network, stack.ainur.netboot
    svc = service_ip(stack)
    netboot = {n.name for n in netboot_nodes(stack)}
    lines = [
        f"# dnsmasq for the Ainur, generated by Iluvatar from the stack inventory (mode {nb.mode}, unknown MACs: {nb.unknown_macs}).",
        "# Do not edit: change the stack and run pulumi up.",
        "# Serve only on the service address, and only while kube-vip holds it on this Pi: dnsmasq then",
        "# answers DHCP, TFTP and DNS on that interface alone, so a second netboot pod stays silent.",
        "bind-dynamic",
        f"listen-address={svc}",
        "# DNS: the internal zone from the inventory; everything else goes to network.dns.",
        "no-resolv",
        "no-hosts",
        "domain-needed",
        "bogus-priv",
        f"local=/{net.domain}/",
        *(f"local=/{zone}/" for zone in _reverse_zones(stack)),
        *(f"server={d}" for d in net.dns),
        "cache-size=1000",
        f"domain={net.domain}",
        *(f"host-record={name},{ip}" for name, ip in dns_records(stack, extra_records)),
        "log-dhcp",
        # Leases live on a volume the pod restores from the cluster, so a restart or a move to
        # another Pi never hands out an address a client still holds.
        f"dhcp-leasefile={lease_file}",
    ]
    if nb.mode == "dhcp":
        lines += [
            "dhcp-authoritative",
            # dnsmasq pings each dynamic address before offering it, one at a time: when power
            # returns, strangers queue ahead of the netboot machines and a storm of 35 clients
            # collapsed (27/35 leases, no Arda machine among them). Validation already keeps every
            # inventory address out of the range, and the persisted leases keep held ones out.
            "no-ping",
            f"dhcp-range={net.dhcp_range.start},{net.dhcp_range.end},{net.lan.netmask},{nb.lease_time}",
            f"dhcp-option=option:router,{net.gateway}",
            f"dhcp-option=option:dns-server,{svc}",
            f"dhcp-option=option:domain-search,{net.domain}",
        ]
    else:
        lines.append(f"dhcp-range={net.lan.network_address},proxy,{net.lan.netmask}")
    lines.append("# One line per machine of the inventory, in address order.")
    for node in sorted(stack.nodes, key=lambda n: n.ip):
        if node.vlan is not None:
            continue
        tags = "set:known" + (",set:netboot" if node.name in netboot else "")
        if nb.mode == "dhcp":
            lines.append(f"dhcp-host={node.mac},{tags},{node.ip},{node.name},infinite")
        else:
            lines.append(f"dhcp-host={node.mac},{tags}")
    if nb.mode == "proxy":
        # Beside the router, answer only the machines the Ainur boot: a Pi or a stranger's PXE
        # firmware must not see an empty Iluvatar menu.
        lines.append("dhcp-ignore=tag:known,tag:!netboot" if stack.generic_worker is not None else "dhcp-ignore=tag:!netboot")
    lines.append("dhcp-userclass=set:ipxe,iPXE")
    for firmware, codes in CLIENT_ARCH.items():
        for code in codes:
            lines.append(f"dhcp-match=set:{firmware},option:client-arch,{code}")
    boot_url = f"{base_url(stack)}/boot.ipxe"
    for selector in _who_boots(stack):
        for firmware, binary in IPXE_BINARIES.items():
            if nb.mode == "dhcp":
                lines.append(f"dhcp-boot={selector},tag:!ipxe,tag:{firmware},{binary},,{svc}")
            else:
                for code in CLIENT_ARCH[firmware]:
                    lines.append(f'pxe-service={selector},tag:!ipxe,{PROXY_CSA[code]},"Iluvatar iPXE",{binary},{svc}')
        # iPXE gets an absolute URL: a router that fills next-server cannot redirect it.
        if nb.mode == "dhcp":
            lines.append(f"dhcp-boot={selector},tag:ipxe,{boot_url}")
        else:
            for code in PROXY_CSA:
                lines.append(f'pxe-service={selector},tag:ipxe,{PROXY_CSA[code]},"Iluvatar",{boot_url}')
    if nb.mode == "proxy":
        lines.append('pxe-prompt="Iluvatar",0')
    lines += ["enable-tftp", f"tftp-root={tftp_root}"]
    return "\n".join(lines) + "\n"


# --- iPXE ------------------------------------------------------------------------------------


def boot_script(stack: StackConfig) -> str:
    """boot.ipxe: a known machine chains to its own script; an unknown one is told so (or booted
    as the generic worker). Each failure names the step and the URL that failed."""
    assert stack.ainur is not None
    generic = stack.generic_worker is not None
    base = base_url(stack)
    lines = [
        "#!ipxe",
        f"# Iluvatar: served at {base}/boot.ipxe; each machine of the inventory has its own script, keyed by MAC.",
        f"set iluvatar {base}",
    ]
    for node in sorted(netboot_nodes(stack), key=lambda n: n.mac):
        lines.append(f"iseq ${{mac:hexhyp}} {mac_name(node.mac)} && goto known ||")
    lines += ["goto unknown", ":known", "set script ${iluvatar}/ipxe/${mac:hexhyp}.ipxe", "chain ${script} || goto failed", "exit", ":unknown"]
    if generic:
        lines += [
            "echo Iluvatar: ${mac} is not in the inventory; booting it as a generic worker (netboot.unknownMacs)",
            f"set script ${{iluvatar}}/ipxe/{GENERIC_WORKER}.ipxe",
            "chain ${script} || goto failed",
            "exit",
        ]
    else:
        lines += [
            "echo Iluvatar: ${mac} is not in the inventory, so it is not netbooted (add it to iluvatar:nodes)",
            "exit",
        ]
    lines += [
        ":failed",
        "echo Iluvatar: ${script} failed with error ${errno} (https://ipxe.org/err); the lines above say which step",
        "sleep 10",
        "exit 1",
    ]
    return "\n".join(lines) + "\n"


def asset_dir(board: str) -> str:
    return f"/assets/{board}"


def kernel_line(stack: StackConfig, board: str, config_name: str | None) -> str:
    """The iPXE `kernel` line. `initrd=` names the initramfs for UEFI's EFI stub, which boots
    without it; `talos.config=` only for machines that are served a config."""
    base = base_url(stack)
    line = f"kernel {base}{asset_dir(board)}/vmlinuz initrd=initramfs.xz {TALOS_KERNEL_ARGS}"
    if config_name is not None:
        line += f" talos.config={base}/configs/{config_name}.yaml"
    return line


def node_script(stack: StackConfig, board: str, config_name: str | None, comment: str) -> str:
    """One machine's iPXE script: the Talos kernel for its board, with its config URL if it gets one."""
    base = base_url(stack)
    assets = f"{base}{asset_dir(board)}"
    mode = "its machine config at talos.config" if config_name else "maintenance mode; Pulumi applies its config"
    return (
        "#!ipxe\n"
        f"# {comment}: Talos {stack.arda.talos_version}, {mode}\n"
        f"{kernel_line(stack, board, config_name)} || goto kernel\n"
        f"initrd --name initramfs.xz {assets}/initramfs.xz || goto initrd\n"
        "boot || goto boot\n"
        ":kernel\n"
        f"echo Iluvatar: could not load the Talos kernel {assets}/vmlinuz (error ${{errno}}); is the netboot cache on the Pi holding {service_ip(stack)} filled?\n"
        "goto fail\n"
        ":initrd\n"
        f"echo Iluvatar: could not download the Talos initramfs {assets}/initramfs.xz (error ${{errno}})\n"
        "goto fail\n"
        ":boot\n"
        f"echo Iluvatar: the Talos kernel for {board} did not start (error ${{errno}}); a truncated download or the wrong architecture?\n"
        ":fail\n"
        "sleep 10\n"
        "exit 1\n"
    )


def scripts(stack: StackConfig) -> dict[str, str]:
    """Every iPXE script by file name: boot.ipxe and one per netboot machine (and the generic worker)."""
    assert stack.ainur is not None
    served = {n.name for n in config_nodes(stack)}
    out = {"boot.ipxe": boot_script(stack)}
    for node in netboot_nodes(stack):
        name = mac_name(node.mac)
        out[f"{name}.ipxe"] = node_script(stack, node.board, name if node.name in served else None, f"{node.name} ({node.role})")
    gw = stack.generic_worker
    if gw is not None:
        out[f"{GENERIC_WORKER}.ipxe"] = node_script(stack, gw.board, GENERIC_WORKER, "an unknown machine, as a generic worker")
    return dict(sorted(out.items()))


def asset_boards(stack: StackConfig) -> list[str]:
    boards = {n.board for n in netboot_nodes(stack)}
    if stack.generic_worker is not None:
        boards.add(stack.generic_worker.board)
    return sorted(boards)


def fetch_assets_script(urls: dict[str, tuple[str, str]], root: str = f"{HOST_CACHE}/assets") -> str:
    """Fill a Pi's cache with each board's Talos kernel and initramfs; skip what is already there.

    A board's pair is downloaded into a new folder and swapped in whole, so nginx never serves a
    kernel with another version's initramfs.
    """
    lines = ["set -eu"]
    for board, (kernel, initramfs) in sorted(urls.items()):
        d = f"{root}/{board}"
        stamp = hashlib.sha256(f"{kernel}\n{initramfs}".encode()).hexdigest()[:16]
        lines += [
            f'if [ "$(cat {d}/source 2>/dev/null)" != {stamp} ]; then',
            f"  rm -rf {d}.new && mkdir -p {d}.new",
            f"  curl -fsSL --retry 5 -o {d}.new/vmlinuz '{kernel}'",
            f"  curl -fsSL --retry 5 -o {d}.new/initramfs.xz '{initramfs}'",
            f"  echo {stamp} > {d}.new/source",
            f"  rm -rf {d}.old && if [ -d {d} ]; then mv {d} {d}.old; fi && mv {d}.new {d} && rm -rf {d}.old",
            "fi",
        ]
    return "\n".join(lines) + "\n"


def fetch_ipxe_script(root: str = f"{HOST_CACHE}/tftp") -> str:
    """Fill a Pi's TFTP cache with the pinned iPXE binaries, checked by SHA-256, unless present."""
    sums = "\n".join(f"{digest}  {name}" for name, (_, digest) in sorted(IPXE_FILES.items()))
    copies = "\n".join(f"  cp /usr/lib/ipxe/{source} {root}.new/{name}" for name, (source, _) in sorted(IPXE_FILES.items()))
    return (
        "set -eu\n"
        f"cat > /tmp/ipxe.sha256 <<'EOF'\n{sums}\nEOF\n"
        f"if ! (cd {root} 2>/dev/null && sha256sum -c --status /tmp/ipxe.sha256); then\n"
        "  apt-get update -qq\n"
        f"  apt-get install -y -qq --no-install-recommends ipxe={IPXE_DEBIAN_VERSION}\n"
        f"  rm -rf {root}.new && mkdir -p {root}.new\n"
        f"{copies}\n"
        f"  (cd {root}.new && sha256sum -c /tmp/ipxe.sha256)\n"
        f"  rm -rf {root}.old && if [ -d {root} ]; then mv {root} {root}.old; fi && mv {root}.new {root} && rm -rf {root}.old\n"
        "fi\n"
    )


# --- Leases ----------------------------------------------------------------------------------

_API = (
    'SA="${SERVICEACCOUNT_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}"\n'
    'API="https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}"\n'
    f'CM="$API/api/v1/namespaces/{NAMESPACE}/configmaps"\n'
    'api() { curl -sS --max-time 10 --cacert "$SA/ca.crt" -H "Authorization: Bearer $(cat "$SA/token")" '
    '-H "Content-Type: application/json" -o /tmp/api.out -w "%{http_code}" "$@"; }\n'
)


def restore_leases_script(lease_file: str = LEASE_FILE) -> str:
    """Init step: copy the lease database from the cluster (ConfigMap) to where dnsmasq reads it."""
    return (
        "set -eu\n"
        + _API
        + f'mkdir -p "$(dirname {lease_file})"\n'
        + f'code=$(api "$CM/{LEASES_CONFIGMAP}")\n'
        + 'case "$code" in\n'
        + f'  200) sed -n \'s/.*"leases": *"\\([A-Za-z0-9+/=]*\\)".*/\\1/p\' /tmp/api.out | base64 -d > {lease_file} ;;\n'
        + f"  404) : > {lease_file} ;;\n"
        + '  *) echo "cannot read the lease ConfigMap: HTTP $code" >&2; cat /tmp/api.out >&2; exit 1 ;;\n'
        + "esac\n"
        + f'echo "restored $(wc -l < {lease_file}) leases"\n'
    )


def save_leases_script(lease_file: str = LEASE_FILE, interval: int = LEASE_SYNC_SECONDS, once: bool = False) -> str:
    """Sidecar: copy the lease database into the cluster whenever dnsmasq changes it."""
    body = (
        '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"'
        + LEASES_CONFIGMAP
        + '","namespace":"'
        + NAMESPACE
        + '"},"binaryData":{"leases":"\'"$(base64 < '
        + lease_file
        + " | tr -d '\\n')\"'\"}}"
    )
    loop = "for _ in 1; do" if once else "while true; do"
    return (
        "set -u\n"
        + _API
        + 'last=""\n'
        + f"{loop}\n"
        + f"  if [ -f {lease_file} ]; then\n"
        + f"    sum=$(md5sum < {lease_file})\n"
        + '    if [ "$sum" != "$last" ]; then\n'
        + f"      body='{body}'\n"
        + f'      code=$(api -X PUT --data-binary "$body" "$CM/{LEASES_CONFIGMAP}")\n'
        + '      if [ "$code" = 404 ]; then code=$(api -X POST --data-binary "$body" "$CM"); fi\n'
        + '      if [ "$code" = 200 ] || [ "$code" = 201 ]; then last=$sum; else echo "saving leases: HTTP $code" >&2; fi\n'
        + "    fi\n"
        + "  fi\n"
        + ("" if once else f"  sleep {interval}\n")
        + "done\n"
    )


# --- nginx -----------------------------------------------------------------------------------


def _cidrs(stack: StackConfig) -> list[str]:
    r = stack.network.dhcp_range
    return [str(n) for n in ipaddress.summarize_address_range(r.start, r.end)]


def nginx_conf(stack: StackConfig, root: str = HTTP_ROOT) -> str:
    """The HTTP server: scripts and assets to anyone; each worker's config only to its own address.

    A worker's config carries the cluster's join token, so it is served only to the address the
    inventory reserves for that machine (403 to any other); a control plane's is never here (404).
    """
    by_mac = {mac_name(n.mac): n for n in config_nodes(stack)}
    lines = [
        "server {",
        "  listen 80;",
        f"  root {root};",
        "  autoindex off;",
        "  location = /boot.ipxe { default_type text/plain; }",
        "  location /ipxe/ { default_type text/plain; }",
        "  location /assets/ { }",
    ]
    for name, node in sorted(by_mac.items()):
        lines.append(f"  location = /configs/{name}.yaml {{ default_type application/yaml; allow {node.ip}; deny all; }}  # {node.name}")
    if stack.generic_worker is not None:
        allow = " ".join(f"allow {c};" for c in _cidrs(stack))
        lines.append(f"  location = /configs/{GENERIC_WORKER}.yaml {{ default_type application/yaml; {allow} deny all; }}  # network.dhcpRange")
    lines += ["  location /configs/ { return 404; }", "}"]
    return "\n".join(lines) + "\n"


# --- Kubernetes objects ----------------------------------------------------------------------


def _labels(app: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "iluvatar"}


def _meta(name: str, labels: dict[str, str], namespace: str | None = NAMESPACE) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _single_pod(name: str, labels: dict[str, str], pod: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A one-replica Deployment replaced, never rolled: two DHCP servers (or two writers of
    one mirror) must never run side by side, even during an update."""
    template_metadata: dict[str, Any] = {"labels": labels}
    if annotations:
        template_metadata["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {"metadata": template_metadata, "spec": pod},
        },
    }


def _nginx(mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "http",
        "image": NGINX_IMAGE,
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
        # Ready once iPXE's first script is served (the same readiness gate as dnsmasq's).
        "readinessProbe": {"httpGet": {"path": "/boot.ipxe", "port": "http"}, "periodSeconds": 5},
        "volumeMounts": mounts,
    }


def _sh(name: str, image: str, script: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "image": image, "command": ["sh", f"/etc/iluvatar/{script}"], "volumeMounts": mounts}


def netboot_pod(config_macs: Sequence[str]) -> dict[str, Any]:
    """The netboot pod: dnsmasq and nginx on the host network, with the leases kept in the cluster."""
    config_items = [{"key": f"{m}.yaml", "path": f"{m}.yaml"} for m in config_macs]
    etc = {"name": "config", "mountPath": "/etc/iluvatar"}
    leases = {"name": "leases", "mountPath": LEASES_DIR}
    return {
        "serviceAccountName": "netboot",
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "terminationGracePeriodSeconds": 5,
        # Prefer a maiar: with one valar, the valar's death then leaves DHCP running, and a maiar's
        # death is rescheduled by the valar's control plane.
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "preference": {"matchExpressions": [{"key": "iluvatar/role", "operator": "In", "values": ["maiar"]}]}}
                ]
            }
        },
        # Leave a dead Pi after EVICTION_SECONDS, not Kubernetes' default 300 s.
        "tolerations": [
            {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": EVICTION_SECONDS}
            for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
        ],
        "initContainers": [_sh("restore-leases", CURL_IMAGE, "restore-leases.sh", [etc, leases])],
        "containers": [
            {
                "name": "dnsmasq",
                "image": DNSMASQ_IMAGE,
                # In the foreground, logging to the container's output (there is no syslog in a pod).
                "args": ["--keep-in-foreground", "--log-facility=-", "--conf-file=/etc/iluvatar/dnsmasq.conf"],
                # DHCP and TFTP bind privileged ports and write the kernel's ARP table for replies.
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"]}},
                "ports": [
                    {"name": "dns-udp", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                    {"name": "dhcp", "containerPort": 67, "protocol": "UDP"},
                    {"name": "tftp", "containerPort": 69, "protocol": "UDP"},
                ],
                # Ready once dnsmasq answers: the Deployment is then "available", which is what Arda's
                # installs wait for (pulumi-kubernetes awaits it) before any machine is told to netboot.
                "readinessProbe": {"tcpSocket": {"port": "dns-tcp"}, "periodSeconds": 5},
                "volumeMounts": [etc, {"name": "tftp", "mountPath": TFTP_ROOT, "readOnly": True}, leases],
            },
            _nginx(
                [
                    {"name": "config", "mountPath": "/etc/nginx/conf.d/default.conf", "subPath": "nginx.conf"},
                    {"name": "ipxe", "mountPath": f"{HTTP_ROOT}/boot.ipxe", "subPath": "boot.ipxe"},
                    {"name": "ipxe", "mountPath": f"{HTTP_ROOT}/ipxe"},
                    {"name": "configs", "mountPath": f"{HTTP_ROOT}/configs"},
                    {"name": "assets", "mountPath": f"{HTTP_ROOT}/assets", "readOnly": True},
                ]
            ),
            _sh("save-leases", CURL_IMAGE, "save-leases.sh", [etc, leases]),
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "netboot"}},
            {"name": "ipxe", "configMap": {"name": "ipxe"}},
            {"name": "configs", "secret": {"secretName": "talos-configs", "items": config_items}},
            {"name": "tftp", "hostPath": {"path": f"{HOST_CACHE}/tftp", "type": "DirectoryOrCreate"}},
            {"name": "assets", "hostPath": {"path": f"{HOST_CACHE}/assets", "type": "DirectoryOrCreate"}},
            {"name": "leases", "emptyDir": {}},
        ],
    }


def cache_pod() -> dict[str, Any]:
    """The netboot-cache pod on every Pi: iPXE binaries and Talos assets on the host, and the
    netboot images pulled, so the netboot pod can start on any Pi with no internet."""
    cache = {"name": "cache", "mountPath": HOST_CACHE}
    etc = {"name": "config", "mountPath": "/etc/iluvatar"}
    return {
        "tolerations": [{"operator": "Exists"}],
        "initContainers": [
            _sh("ipxe", DEBIAN_IMAGE, "fetch-ipxe.sh", [etc, cache]),
            # The curl image runs as an unprivileged user; the host folder is root's.
            {**_sh("assets", CURL_IMAGE, "fetch-assets.sh", [etc, cache]), "securityContext": {"runAsUser": 0}},
            {"name": "pull-dnsmasq", "image": DNSMASQ_IMAGE, "command": ["dnsmasq", "--version"]},
            {"name": "pull-nginx", "image": NGINX_IMAGE, "command": ["nginx", "-v"]},
        ],
        "containers": [
            {"name": "idle", "image": CURL_IMAGE, "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 3600 & wait $!; done"]}
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "netboot"}},
            {"name": "cache", "hostPath": {"path": HOST_CACHE, "type": "DirectoryOrCreate"}},
        ],
    }


def kube_vip_services() -> list[dict[str, Any]]:
    """kube-vip for LoadBalancer addresses on every Pi (the API VIP stays with the valar's static
    pod): per-Service election among the Pis running an endpoint, so the service address follows
    the netboot pod."""
    labels = _labels("kube-vip")
    env = {
        "vip_arp": "true",
        "cp_enable": "false",
        "svc_enable": "true",
        "svc_election": "true",
        **KUBE_VIP_ELECTION,
        "prometheus_server": "",  # the valar's static kube-vip already listens on :2112
    }
    rules = [
        {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["list", "get", "watch", "update"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "get", "watch", "update", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["list", "get", "watch", "update", "create"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "get", "watch", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    ]
    pod = {
        "serviceAccountName": "kube-vip",
        "hostNetwork": True,
        "tolerations": [{"operator": "Exists"}],
        "containers": [
            {
                "name": "kube-vip",
                "image": KUBE_VIP_IMAGE,
                "args": ["manager"],
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
            }
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("kube-vip", labels, "kube-system")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta("iluvatar-kube-vip", labels, None), "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta("iluvatar-kube-vip", labels, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "iluvatar-kube-vip"},
            "subjects": [{"kind": "ServiceAccount", "name": "kube-vip", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("kube-vip-services", labels, "kube-system"),
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod}},
        },
    ]


def config_digest(stack: StackConfig, config_macs: Sequence[str], extra_records: Sequence[tuple[str, IPv4Address]] = ()) -> str:
    """Changes whenever anything the netboot pod serves changes, so the pod is replaced."""
    boards = [f"{b}:{talos.schematic_yaml(BOARDS[b])}" for b in asset_boards(stack)]
    parts = [
        dnsmasq_conf(stack, extra_records=extra_records),
        nginx_conf(stack),
        stack.arda.talos_version,
        *boards,
        *scripts(stack).values(),
        *config_macs,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def manifests(stack: StackConfig, config_macs: list[str], extra_records: Sequence[tuple[str, IPv4Address]] = ()) -> list[dict[str, Any]]:
    """The netboot namespace's objects, Namespace first. `extra_records` join the internal DNS zone
    (see `dns_records`).

    The machine configs (a Secret) and the asset download script (from Image Factory URLs)
    are only known at deploy time; the component adds them.
    """
    labels = _labels("netboot")
    cache_labels = _labels("netboot-cache")
    config_data = {
        "dnsmasq.conf": dnsmasq_conf(stack, extra_records=extra_records),
        "nginx.conf": nginx_conf(stack),
        "restore-leases.sh": restore_leases_script(),
        "save-leases.sh": save_leases_script(),
        "fetch-ipxe.sh": fetch_ipxe_script(),
    }
    leases_rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [LEASES_CONFIGMAP], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    ]
    return [
        # hostNetwork and NET_ADMIN (DHCP) need the privileged Pod Security level.
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("netboot", labels), "data": config_data},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("ipxe", labels), "data": scripts(stack)},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("netboot", labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta("netboot-leases", labels), "rules": leases_rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta("netboot-leases", labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "netboot-leases"},
            "subjects": [{"kind": "ServiceAccount", "name": "netboot", "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("netboot-cache", cache_labels),
            "spec": {"selector": {"matchLabels": cache_labels}, "template": {"metadata": {"labels": cache_labels}, "spec": cache_pod()}},
        },
        _single_pod(
            "netboot",
            labels,
            netboot_pod(config_macs),
            annotations={"iluvatar/config-digest": config_digest(stack, config_macs, extra_records)},
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**_meta("netboot", labels), "annotations": {"kube-vip.io/loadbalancerIPs": str(service_ip(stack))}},
            "spec": {
                "type": "LoadBalancer",
                # kube-vip announces the address only from a Pi running the pod, and clients'
                # own addresses reach nginx (each worker's config is served to its address only).
                "externalTrafficPolicy": "Local",
                "selector": labels,
                # Only HTTP: kube-proxy would rewrite DNS, DHCP and TFTP packets to the Pi's own
                # address, where dnsmasq does not listen; they reach the service address directly.
                "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}],
            },
        },
        *kube_vip_services(),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SEED_NAMESPACE, "labels": _labels("argocd-seed")}},
    ]


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
            "spec": {
                "type": "LoadBalancer",
                "selector": labels,
                "ports": [{"name": "git", "port": gitops.MIRROR_PORT, "targetPort": "git", "protocol": "TCP"}],
            },
        },
    ]


def config_macs(stack: StackConfig) -> list[str]:
    """The config file names the HTTP server serves: one per netboot worker (and the generic worker)."""
    assert stack.ainur is not None
    names = [mac_name(n.mac) for n in config_nodes(stack)]
    if stack.generic_worker is not None:
        names.append(GENERIC_WORKER)
    return names
