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

One module per thing rendered, each with one reason to change:

    base.py       where things live, which machines netboot, the per-MAC names
    dnsmasq.py    DHCP (or ProxyDHCP), TFTP and the internal zone's DNS
    ipxe.py       boot.ipxe and each machine's iPXE script
    nginx.py      the HTTP server: scripts, assets, each worker's config to its own address
    cache.py      what fills each Pi's cache: the pinned iPXE binaries, the Talos kernels
    leases.py     the scripts that keep dnsmasq's leases in the cluster
    records.py    the loop that hands dnsmasq its names and DHCP hosts as they change, with no restart
    window.py     the discovery window's loop: boot.ipxe boots unknown machines only while it is open
    pods.py       the netboot and netboot-cache pod specs, the shared object metadata
    kube_vip.py   kube-vip for LoadBalancer addresses on every Pi
    vip_roll.py   its roll, one Pi at a time, the Pi holding the service address last
    mirror.py     the Git mirror's objects
    objects.py    the netboot namespace's objects, assembled

Every name is re-exported here: callers use `from plans import netboot; netboot.dnsmasq_conf(...)`.
"""

from plans.netboot.base import (
    DISCOVERY_HOSTNAME,
    DISCOVERY_LEASE,
    DISCOVERY_WINDOW_CONFIGMAP,
    DISCOVERY_WINDOW_FILE,
    GENERIC_WORKER,
    HOST_CACHE,
    HTTP_ROOT,
    LEASE_FILE,
    LEASES_DIR,
    NAMESPACE,
    TFTP_ROOT,
    asset_boards,
    base_url,
    config_macs,
    config_nodes,
    discovery_script,
    dnsmasq_configmap,
    mac_name,
    netboot_nodes,
    service_ip,
)
from plans.netboot.cache import IPXE_DEBIAN_VERSION, IPXE_FILES, SILENT_SECONDS, clearance_script, fetch_assets_script, fetch_ipxe_script
from plans.netboot.dnsmasq import CLIENT_ARCH, IPXE_BINARIES, PROXY_CSA, dhcp_hosts_file, dns_records, dnsmasq_conf, hosts_file, served_conf
from plans.netboot.dnsmasq import _reverse_zones as _reverse_zones  # the tests read it
from plans.netboot.ipxe import TALOS_KERNEL_ARGS, asset_dir, boot_script, kernel_line, node_script, scripts
from plans.netboot.kube_vip import kube_vip_services
from plans.netboot.leases import LEASE_SYNC_SECONDS, LEASES_CONFIGMAP, drop_stale_script, restore_leases_script, save_leases_script
from plans.netboot.mirror import git_mirror_manifests
from plans.netboot.nginx import nginx_conf
from plans.netboot.objects import LEGACY_CONF_KEY, SEED_NAMESPACE, balances, config_digest, legacy_conf, manifests
from plans.netboot.pods import CURL_IMAGE, DEBIAN_IMAGE, DNSMASQ_IMAGE, EVICTION_SECONDS, NGINX_IMAGE, cache_pod, netboot_pod
from plans.netboot.records import records_script
from plans.netboot.window import MAX_WINDOW_SECONDS, WINDOW_POLL_SECONDS, window_script

__all__ = [
    "CLIENT_ARCH",
    "CURL_IMAGE",
    "DEBIAN_IMAGE",
    "DISCOVERY_HOSTNAME",
    "DISCOVERY_LEASE",
    "DISCOVERY_WINDOW_CONFIGMAP",
    "DISCOVERY_WINDOW_FILE",
    "DNSMASQ_IMAGE",
    "EVICTION_SECONDS",
    "GENERIC_WORKER",
    "HOST_CACHE",
    "HTTP_ROOT",
    "IPXE_BINARIES",
    "IPXE_DEBIAN_VERSION",
    "IPXE_FILES",
    "LEASES_CONFIGMAP",
    "LEASES_DIR",
    "LEASE_FILE",
    "LEASE_SYNC_SECONDS",
    "LEGACY_CONF_KEY",
    "MAX_WINDOW_SECONDS",
    "NAMESPACE",
    "NGINX_IMAGE",
    "PROXY_CSA",
    "SEED_NAMESPACE",
    "SILENT_SECONDS",
    "TALOS_KERNEL_ARGS",
    "TFTP_ROOT",
    "WINDOW_POLL_SECONDS",
    "asset_boards",
    "asset_dir",
    "balances",
    "base_url",
    "boot_script",
    "cache_pod",
    "clearance_script",
    "config_digest",
    "config_macs",
    "config_nodes",
    "dhcp_hosts_file",
    "discovery_script",
    "dns_records",
    "dnsmasq_conf",
    "dnsmasq_configmap",
    "drop_stale_script",
    "fetch_assets_script",
    "fetch_ipxe_script",
    "git_mirror_manifests",
    "hosts_file",
    "kernel_line",
    "kube_vip_services",
    "legacy_conf",
    "mac_name",
    "manifests",
    "netboot_nodes",
    "netboot_pod",
    "nginx_conf",
    "node_script",
    "records_script",
    "restore_leases_script",
    "save_leases_script",
    "scripts",
    "served_conf",
    "service_ip",
    "window_script",
]
