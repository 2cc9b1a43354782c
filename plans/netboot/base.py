"""What every part of the netboot plan shares: where things live, and which machines netboot.

The Ainur's services live at one address, `ainur.serviceIp`; every URL a machine fetches names it.
Per-machine paths are keyed by MAC, spelt as iPXE spells it.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address

from stacks.model import Node, StackConfig

NAMESPACE = "netboot"
TFTP_ROOT = "/var/lib/iluvatar/tftp"
LEASES_DIR = "/var/lib/iluvatar/leases"
LEASE_FILE = f"{LEASES_DIR}/dnsmasq.leases"
# The records dnsmasq reads without a restart (plans.netboot.records): its `hostsdir` and `dhcp-hostsdir`, in an
# emptyDir of the netboot pod that the records loop fills from the netboot ConfigMap.
RECORDS_DIR = "/var/lib/iluvatar/records"
# Where dnsmasq's container reads dnsmasq.conf: the volume of a ConfigMap named by its content (`dnsmasq_configmap`), never
# the live-updated netboot ConfigMap's (see plans.netboot.objects).
DNSMASQ_ETC = "/etc/iluvatar-dnsmasq"
DNSMASQ_CONFIGMAP_PREFIX = "netboot-dnsmasq-"


# The addresses this network namespace holds, one a line: the kernel's local routes, /proc/net/fib_trie's "/32 host
# LOCAL" entries, each under the line naming its address. A pod on a Pi's host network reads the Pi's, which is how it
# knows whether kube-vip holds the service address there (no `ip` in the curl image; busybox awk reads this).
LOCAL_ADDRESSES = "awk '/\\|--/ {a=$2} /\\/32 host LOCAL/ {print a}' /proc/net/fib_trie"


def dnsmasq_configmap(conf: str) -> str:
    """The name of the ConfigMap holding dnsmasq.conf `conf`: its content's digest, so another conf is another ConfigMap."""
    return DNSMASQ_CONFIGMAP_PREFIX + hashlib.sha256(conf.encode()).hexdigest()[:10]


HTTP_ROOT = "/usr/share/nginx/html"
# Each Pi's cache of what netbooting needs, filled by the netboot-cache DaemonSet, so the netboot
# pod starts on any Pi without the internet (after a power cut the ISP link may be the last up).
HOST_CACHE = "/var/lib/iluvatar/netboot"
GENERIC_WORKER = "generic-worker"
# A machine being discovered (arda.discovery) asks DHCP as `discovery-<arch>-<mac>` (Talos's talos.hostname, set by its
# iPXE script), which is how the Ainur's dnsmasq keeps it in the discovery pool and how `iluvatar discover` finds it.
DISCOVERY_HOSTNAME = "discovery-"
# The discovery window (`iluvatar discover --arm`): a ConfigMap the user's command writes, which the netboot pod's
# discovery-window loop turns into the file boot.ipxe asks for (plans.netboot.window), served from an emptyDir.
DISCOVERY_WINDOW_CONFIGMAP = "discovery-window"
DISCOVERY_WINDOW_DIR = "discovery"  # under the HTTP root
DISCOVERY_WINDOW_FILE = f"{DISCOVERY_WINDOW_DIR}/window.ipxe"
# The discovery pool's lease: dnsmasq's shortest (src/option.c:3929-3932 at v2.90 raises anything under 120 s to
# it). Talos renews at half its lease (operator/dhcp4.go:183 at v1.12.4), so a machine `discover --write` added moves
# to its reserved address within about a minute of the next `pulumi up` serving its entry: its renewal of the pool
# address is refused (rfc2131.c:1307-1310: the pool is not its tags' any more) and it asks again (dhcp4.go:577-581).
DISCOVERY_LEASE = "2m"


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


def asset_boards(stack: StackConfig) -> list[str]:
    boards = {n.board for n in netboot_nodes(stack)}
    if stack.generic_worker is not None:
        boards.add(stack.generic_worker.board)
    boards.update(stack.discovery_boards.values())
    return sorted(boards)


def discovery_script(arch: str) -> str:
    """The iPXE script a machine being discovered boots with, by the architecture its iPXE reports."""
    return f"discovery-{arch}.ipxe"


def config_macs(stack: StackConfig) -> list[str]:
    """The config file names the HTTP server serves: one per netboot worker (and the generic worker)."""
    assert stack.ainur is not None
    names = [mac_name(n.mac) for n in config_nodes(stack)]
    if stack.generic_worker is not None:
        names.append(GENERIC_WORKER)
    return names
