"""dnsmasq.conf: DNS for the internal zone, DHCP (or ProxyDHCP) with PXE, and TFTP for iPXE.

dnsmasq answers only on the service address, and only while kube-vip holds it on the Pi it runs
on, so two Pis never answer at once. PXE firmware gets the iPXE binary for its architecture over
TFTP; iPXE then gets an absolute URL on the service address, never `${next-server}` (which a
router may fill).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address

from plans.netboot.base import DISCOVERY_HOSTNAME, DISCOVERY_LEASE, LEASE_FILE, RECORDS_DIR, TFTP_ROOT, base_url, netboot_nodes, service_ip
from plans.netboot.pis import PI_OPTION43, netboot_pis
from plans.network import gateway_addresses, zone_records
from stacks.model import StackConfig

# iPXE binary per PXE firmware, and the DHCP option 93 client architectures that firmware sends
# (RFC 4578 and IANA: 7 and 9 are both x86-64 UEFI; firmware in the wild sends either).
IPXE_BINARIES = {"bios": "undionly.kpxe", "uefi-x86_64": "ipxe.efi", "uefi-arm64": "ipxe-arm64.efi"}
CLIENT_ARCH = {"bios": (0,), "uefi-x86_64": (7, 9), "uefi-arm64": (11,)}
# dnsmasq's names for those architectures in ProxyDHCP menus (pxe-service CSA).
PROXY_CSA = {0: "x86PC", 7: "X86-64_EFI", 9: "BC_EFI", 11: "ARM64_EFI"}


def dns_records(stack: StackConfig, extra: Iterable[tuple[str, IPv4Address]] = ()) -> list[tuple[str, IPv4Address]]:
    """The internal zone the Ainur answer for: every machine, the VIPs, the service address, the
    Git mirror, the Envoy gateways, and `extra` (name or FQDN, address) records such as the app
    hosts the edge layer adds. Sorted by name, one record per name."""
    assert stack.ainur is not None
    domain = stack.network.domain
    records: dict[str, IPv4Address] = {r.name: IPv4Address(r.value) for r in zone_records(stack)}
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


def _boots_unknown(stack: StackConfig) -> bool:
    """Whether a MAC no machine of the inventory has is booted: to be discovered, or as the generic worker."""
    return stack.generic_worker is not None or stack.discovery is not None


def _who_boots(stack: StackConfig) -> list[str]:
    """dnsmasq tag selectors of the machines the Ainur boot: netboot MACs, and unknown ones when opted in."""
    return ["tag:netboot"] + (["tag:!known"] if _boots_unknown(stack) else [])


def _discovery(stack: StackConfig) -> list[str]:
    """The lines that keep a machine being discovered in arda.discovery.pool, from its PXE firmware to Talos.

    Its firmware and iPXE send a client architecture (option 93) and no inventory MAC: the `discovery` tag. Talos,
    booted with no config, sends none; it sends the name its iPXE script gave it (talos.hostname, option 12), which
    tags it the same. The tags decide the range an address comes from: dnsmasq offers a client the address of its
    lease only while a range its tags may use holds it (dnsmasq 2.90 src/rfc2131.c:1131-1133 and src/dhcp.c:639-667,
    address_available), so every request of the machine, each tagged `discovery`, keeps one pool address, and no
    other client is ever lent one. tag-if runs after dhcp-match, dhcp-name-match and dhcp-host have set their tags and
    before a range is chosen (src/rfc2131.c:757-830); `!known` is negation there too (src/dhcp-common.c:84-110).
    """
    discovery = stack.discovery
    assert stack.ainur is not None
    nb, net = stack.ainur.netboot, stack.network
    # In proxy mode the router lends every address: validation refuses a pool there (stacks.discovery).
    if discovery is None or discovery.pool is None or nb.mode != "dhcp":
        return []
    return [
        "# arda.discovery: an unknown machine that PXE-boots, and the Talos it boots, borrow an address of the pool,",
        f"# for {DISCOVERY_LEASE}: once `pulumi up` serves its entry, its next renewal moves it to its own address.",
        f"dhcp-name-match=set:discovery-name,{DISCOVERY_HOSTNAME}*",
        *(f"tag-if=set:discovery,tag:!known,tag:{firmware}" for firmware in CLIENT_ARCH),
        "tag-if=set:discovery,tag:!known,tag:discovery-name",
        f"dhcp-range=tag:discovery,{discovery.pool.start},{discovery.pool.end},{net.lan.netmask},{DISCOVERY_LEASE}",
    ]


# What a Raspberry Pi 4 and 5 bootloader puts first in its DHCP option 97 (the client GUID): type 0, then the FourCC
# R,P,i,4 or R,P,i,5 (rpi-eeprom firmware-2711/release-notes.md, 2020-03-11: "DHCP_OPTION97 - The default GUID has now
# changed to RPI4+BOARD_ID+ETH_MAC_LSB+SERIAL in order to make it easier to automatically identify Raspberry Pi
# computers"; firmware-2712/release-notes.md, 2023-10-30: "Update DHCP Option97 to be R,P,i,5 on Pi5").
PI_OPTION97 = ("00:52:50:69:34", "00:52:50:69:35")


def _unknown_pis(stack: StackConfig) -> list[str]:
    """An unknown Raspberry Pi's bootloader gets nothing where unknown machines are booted (arda.discovery, the generic
    worker): it sends a BIOS PC's PXE request (client architecture 0, PXEClient:Arch:00000:UNDI:002001), and would
    otherwise get undionly.kpxe, which it cannot run, and an address of the discovery pool. dnsmasq ignores a client
    once its tags, tag-if's included, match a dhcp-ignore line, in a ProxyDHCP answer too (dnsmasq 2.90 src/rfc2131.c:
    830-835, 1011); dhcp-match's hex value matches the option's first bytes (src/dhcp-common.c:268-282, match_bytes)."""
    if not _boots_unknown(stack):
        return []
    return [
        "# An unknown Raspberry Pi's bootloader (option 97 begins R,P,i,4 or R,P,i,5) gets no answer: nothing it could boot,",
        "# no address of the discovery pool. Only the inventory's netbooting Pis boot from the Ainur.",
        *(f"dhcp-match=set:rpi-bootloader,97,{prefix}" for prefix in PI_OPTION97),
        "dhcp-ignore=tag:rpi-bootloader,tag:!known",
    ]


def _unknown(stack: StackConfig) -> str:
    assert stack.ainur is not None
    return "discovery" if stack.discovery is not None else stack.ainur.netboot.unknown_macs


# dnsmasq's folders under the records' folder (RECORDS_DIR): the internal zone's names, and the inventory's DHCP hosts;
# and the one file each holds.
HOSTS_DIR = "hosts"
DHCP_HOSTS_DIR = "dhcp-hosts"
RECORDS_FILE = "iluvatar"


def hosts_file(stack: StackConfig, extra_records: Sequence[tuple[str, IPv4Address]] = ()) -> str:
    """The internal zone's names (`dns_records`) in /etc/hosts' form, which dnsmasq reads from its `hostsdir`: an app
    or a machine added changes this file only, never dnsmasq.conf, and dnsmasq reads it anew without a restart."""
    lines = ["# The internal zone, generated by Iluvatar from the stack inventory and the apps' hosts: one name a line."]
    lines += [f"{ip} {name}" for name, ip in dns_records(stack, extra_records)]
    return "\n".join(lines) + "\n"


def dhcp_hosts_file(stack: StackConfig) -> str:
    """One line per machine of the inventory, in address order, as dnsmasq reads a `dhcp-hostsfile` (a dhcp-host line's
    value: dnsmasq 2.90 src/option.c:5515-5524, one_file with LOPT_BANK, parses it as --dhcp-host, :3940-3949): its
    reservation (MAC, address, name), in either mode. The same in both, so a move between modes changes nothing the
    running dnsmasq reads anew: the records loop hands the running pod the new ConfigMap's file before the Deployment
    changes, and a proxy-mode file would drop a still-lending dnsmasq's every reservation. In proxy mode the address is
    unused: a proxy answer zeroes yiaddr and clears the packet (src/rfc2131.c:954-968), BOOTP is refused (:553), and the
    host still matches, tagged `known` (:528-536; an address on the LAN is in the proxy range's net, src/dhcp-common.c:
    312-343, is_config_in_context). No `set:` tag: dnsmasq links a matched host's tags into each packet's list
    (src/rfc2131.c:819-827) and frees them on the SIGHUP that re-reads this file (src/option.c:1326-1335 through
    clear_dynamic_conf, :5765-5781), walking into that packet's list: it aborts (tests/netns/test_dnsmasq_records.py,
    with the real dnsmasq). The tags are dnsmasq.conf's `dhcp-mac` lines (`_tags`)."""
    assert stack.ainur is not None
    lines = ["# The inventory's machines, generated by Iluvatar from the stack inventory, in address order."]
    for node in sorted(stack.nodes, key=lambda n: n.ip):
        if node.vlan is not None:
            continue
        lines.append(f"{node.mac},{node.ip},{node.name},infinite")
    return "\n".join(lines) + "\n"


def _tags(stack: StackConfig) -> list[str]:
    """The netbooted machines' and the netbooting Pis' tags, by MAC: dnsmasq.conf's, never freed while dnsmasq runs
    (see `dhcp_hosts_file`). A machine that netboots is also a config item of the netboot pod (plans.netboot.objects),
    so one added replaces the pod anyway; a machine that boots from its disk is a line of the DHCP hosts file alone."""
    netboot = {n.name for n in netboot_nodes(stack)}
    pis = {n.name for n in netboot_pis(stack)}
    lines = []
    for node in sorted(stack.nodes, key=lambda n: n.ip):
        if node.vlan is not None:
            continue
        lines += [f"dhcp-mac=set:{tag},{node.mac}" for tag, names in (("netboot", netboot), ("rpiboot", pis)) if node.name in names]
    return lines


def served_conf(stack: StackConfig, extra_records: Sequence[tuple[str, IPv4Address]] = ()) -> str:
    """All dnsmasq serves in one file: dnsmasq.conf with its two folders' records written in as lines (`host-record`,
    `dhcp-host`). What the stack exports as `dnsmasqConf`, which a later deployment reads (stacks.day2)."""
    records = [f"host-record={name},{ip}" for name, ip in dns_records(stack, extra_records)]
    hosts = [f"dhcp-host={line}" for line in dhcp_hosts_file(stack).splitlines() if not line.startswith("#")]
    return dnsmasq_conf(stack) + "# The records of hostsdir and dhcp-hostsdir:\n" + "\n".join(records + hosts) + "\n"


def dnsmasq_conf(stack: StackConfig, tftp_root: str = TFTP_ROOT, lease_file: str = LEASE_FILE, records_dir: str = RECORDS_DIR) -> str:
    """dnsmasq.conf: DNS for the internal zone, DHCP (or ProxyDHCP) with PXE, and TFTP for iPXE. Only what dnsmasq
    reads at its start alone: the records that change with each app and machine are files it reads anew (`hosts_file`,
    `dhcp_hosts_file`), so such a change leaves this file, and the netboot pod, as they are."""
    assert stack.ainur is not None
    net, nb = stack.network, stack.ainur.netboot
    svc = service_ip(stack)
    pis = {n.name for n in netboot_pis(stack)}
    lines = [
        f"# dnsmasq for the Ainur, generated by Iluvatar from the stack inventory (mode {nb.mode}, unknown MACs: {_unknown(stack)}).",
        "# Do not edit: change the stack and run pulumi up.",
        "# Serve the LAN only on the service address, and only while kube-vip holds it on this Pi: dnsmasq then",
        "# answers DHCP, TFTP and DNS on that interface alone, so a second netboot pod stays silent.",
        "bind-dynamic",
        f"listen-address={svc}",
        "# And on the Pi's loopback, where the kubelet's readiness probe dials (plans.netboot.pods): the service",
        "# address is announced only once this pod is Ready (kube-vip), so a probe there could never pass first.",
        "listen-address=127.0.0.1",
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
        # The internal zone's names: a file the records loop (plans.netboot.records) puts in this folder by one rename,
        # which dnsmasq reads anew when it sees it (inotify: dnsmasq 2.90 src/inotify.c:192, IN_MOVED_TO; :303-325, a
        # hosts file's old names flushed first). The inventory's DHCP hosts: a file dnsmasq reads at its start and anew,
        # its old hosts dropped first, on the SIGHUP the records loop sends it after putting a new one (src/dnsmasq.c:
        # 1726-1738, clear_cache_and_reload; src/option.c:5810-5826, reread_dhcp), not a dhcp-hostsdir, whose lines
        # dnsmasq only adds (src/inotify.c:327-337): a reservation changed or removed would stay. Nothing here changes
        # with an app or a machine that boots from its disk, so the netboot pod is not replaced for one.
        f"hostsdir={records_dir}/{HOSTS_DIR}",
        f"dhcp-hostsfile={records_dir}/{DHCP_HOSTS_DIR}/{RECORDS_FILE}",
        *_tags(stack),
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
            *_discovery(stack),
            # Every other client's range: never a machine being discovered, which has the pool (when there is one).
            f"dhcp-range={'tag:!discovery,' if _discovery(stack) else ''}{net.dhcp_range.start},{net.dhcp_range.end},{net.lan.netmask},{nb.lease_time}",
            f"dhcp-option=option:router,{net.gateway}",
            f"dhcp-option=option:dns-server,{svc}",
            f"dhcp-option=option:domain-search,{net.domain}",
        ]
    else:
        lines.append(f"dhcp-range={net.lan.network_address},proxy,{net.lan.netmask}")
    if nb.mode == "proxy":
        # Beside the router, answer only the machines the Ainur boot: a Pi or a stranger's PXE
        # firmware must not see an empty Iluvatar menu.
        # (dnsmasq ignores a client when every tag of the line matches: neither netbooted by iPXE nor a netbooting Pi.)
        rpi = ",tag:!rpiboot" if pis else ""
        lines.append(f"dhcp-ignore=tag:known,tag:!netboot{rpi}" if _boots_unknown(stack) else f"dhcp-ignore=tag:!netboot{rpi}")
    lines += _unknown_pis(stack)
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
    lines += _pi_lines(stack, svc, bool(pis))
    lines += ["enable-tftp", f"tftp-root={tftp_root}"]
    if pis:
        lines.append("tftp-unique-root=mac")
    return "\n".join(lines) + "\n"


def _pi_lines(stack: StackConfig, svc: IPv4Address, any_pi: bool) -> list[str]:
    """The netbooting Pis' bootloaders (plans.netboot.pis): "Raspberry Pi Boot" in option 43, the service address as
    the server, and each Pi's TFTP files under a folder of its MAC."""
    if not any_pi:
        return []
    return [
        "# The netbooting maiar's Raspberry Pi bootloaders take only an answer whose option 43 holds this menu string",
        "# (eeprom-bootloader.adoc, PXE_OPTION43); the PXE menu of architecture 0 (x86PC: what the bootloader sends) carries",
        "# it, in dhcp and in proxy mode alike. Only the inventory's netbooting Pis (tag rpiboot, by MAC) get it.",
        f'pxe-service=tag:rpiboot,x86PC,"{PI_OPTION43}"',
        "# The TFTP server in the answer (siaddr): the service address, in a ProxyDHCP answer too.",
        f"dhcp-boot=tag:rpiboot,,,{svc}",
        "# Each Pi reads <serial>/<file>; dnsmasq serves it from <tftp-root>/<its MAC>/ (tftp-unique-root=mac), so a Pi",
        "# that names another Pi's serial finds nothing. Machines without such a folder read the root (the iPXE binaries).",
    ]
