"""The lease scripts: dnsmasq's leases kept in the cluster (a ConfigMap), restored before dnsmasq
starts and saved back within seconds of every change, so a restart or a move to another Pi never
offers an address a client still holds."""

from __future__ import annotations

from plans.netboot.base import LEASE_FILE, LOCAL_ADDRESSES, NAMESPACE

LEASES_CONFIGMAP = "dnsmasq-leases"
# How often the lease file is copied into the cluster: a lease granted less than this before its
# Pi died is the only one a moved netboot pod can forget.
LEASE_SYNC_SECONDS = 2
_API = (
    'SA="${SERVICEACCOUNT_DIR:-/var/run/secrets/kubernetes.io/serviceaccount}"\n'
    'API="https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}"\n'
    f'CM="$API/api/v1/namespaces/{NAMESPACE}/configmaps"\n'
    # The pod's /tmp; TMPDIR where the scripts run beside others (the tests), which would share one reply file.
    'OUT="${TMPDIR:-/tmp}/api.out"\n'
    'api() { curl -sS --max-time 10 --cacert "$SA/ca.crt" -H "Authorization: Bearer $(cat "$SA/token")" '
    '-H "Content-Type: application/json" -o "$OUT" -w "%{http_code}" "$@"; }\n'
)


# The inventory's reservations as the netboot ConfigMap's volume holds them (plans.netboot.records: `MAC,IP,NAME,LEASE`
# a line, plans.netboot.dnsmasq.dhcp_hosts_file), where restore-leases reads them.
DHCP_HOSTS = "/etc/iluvatar/dnsmasq-dhcp-hosts"
# A reservation's lease is `infinite`, so a machine keeps its address through an Ainur outage of any length. The cost:
# once the machine is gone (removed, or its MAC replaced), its lease holds the address for ever, and dnsmasq will not lend
# it to the MAC now reserved at it (dnsmasq 2.90 src/rfc2131.c:1101-1111, "not using configured address ... because it
# is leased to ..."). So before dnsmasq starts, a lease is dropped when it is infinite and its address is reserved for
# another MAC: dnsmasq writes a lease a line, `EXPIRY MAC IP NAME CLIENTID`, EXPIRY 0 for an infinite one (src/lease.c:
# 246-295, lease_update_file; :810-832, lease_set_expires). Only infinite ones: a household device's lease is finite,
# and one of an address a range lent before a reservation took it must run out, or the machine would be lent an
# address the device still holds.
# In proxy mode the router lends every address, the inventory's through its static leases, and the Ainur lend none; yet
# dnsmasq still loads the lease file and answers DNS for each lease's name and address, the reverse name too (src/lease.c:
# 492-545, lease_update_dns), and an infinite lease never runs out. One that a move from dhcp carried over, of a machine
# since removed or given another address, would have the Ainur name an address the router now owns for ever. So in proxy
# mode every infinite lease goes that is not its MAC's reservation at its address.
STALE = (
    "awk -v proxy=%d -F'[ ,]' 'NR == FNR { if ($0 !~ /^#/ && NF >= 2) reserved[$2] = tolower($1); next }"
    ' !($1 == "0" && (($3 in reserved) ? tolower($2) != reserved[$3] : proxy == 1))\''
)


def drop_stale_script(lease_file: str = LEASE_FILE, hosts_file: str = DHCP_HOSTS, proxy: bool = False) -> str:
    """The lease file without the infinite leases of addresses the inventory now reserves for another MAC (`STALE`), and
    in `proxy` mode without any infinite lease that is not its MAC's reservation, each dropped one said; nothing when
    there is no DHCP hosts file."""
    said = (
        "dropped the infinite leases no reservation holds (proxy mode: the router lends every address):"
        if proxy
        else "dropped the leases of reserved addresses held by a MAC no longer reserved at them:"
    )
    return (
        f"if [ -f {hosts_file} ] && [ -s {lease_file} ]; then\n"
        f"  {STALE % int(proxy)} {hosts_file} {lease_file} > {lease_file}.kept\n"
        f"  if ! cmp -s {lease_file} {lease_file}.kept; then\n"
        f'    echo "{said}"\n'
        f"    grep -vxF -f {lease_file}.kept {lease_file} || true\n"
        "  fi\n"
        f"  mv {lease_file}.kept {lease_file}\n"
        "fi\n"
    )


def restore_leases_script(lease_file: str = LEASE_FILE, hosts_file: str = DHCP_HOSTS, proxy: bool = False) -> str:
    """Init step: copy the lease database from the cluster (ConfigMap) to where dnsmasq reads it, without the stale
    leases of reservations (`drop_stale_script`; `proxy`: the stack's mode is proxy)."""
    return (
        "set -eu\n"
        + _API
        + f'mkdir -p "$(dirname {lease_file})"\n'
        + f'code=$(api "$CM/{LEASES_CONFIGMAP}")\n'
        + 'case "$code" in\n'
        + f'  200) sed -n \'s/.*"leases": *"\\([A-Za-z0-9+/=]*\\)".*/\\1/p\' "$OUT" | base64 -d > {lease_file} ;;\n'
        + f"  404) : > {lease_file} ;;\n"
        + '  *) echo "cannot read the lease ConfigMap: HTTP $code" >&2; cat "$OUT" >&2; exit 1 ;;\n'
        + "esac\n"
        + drop_stale_script(lease_file, hosts_file, proxy)
        + f'echo "restored $(wc -l < {lease_file}) leases"\n'
    )


def save_leases_script(lease_file: str = LEASE_FILE, interval: int = LEASE_SYNC_SECONDS, once: bool = False, *, address: str) -> str:
    """Sidecar: copy the lease database into the cluster whenever dnsmasq changes it, only while this Pi holds the
    service address `address`.

    Why the fence: a netboot pod evicted from a Pi whose k3s restarts keeps running there until that kubelet is back
    (the eviction only deletes the record), and its dnsmasq still rewrites its lease file (a lease running out). Its PUT,
    which carries no resourceVersion, would replace the leases its replacement on another Pi has lent since, and a
    restart of the replacement would restore the old view and could lend a held address again. The pod that serves is
    the one on the Pi holding the service address: kube-vip announces it only from a Pi with a Ready endpoint, and the
    evicted pod's is no longer Ready (kube-vip v0.9.2 pkg/manager/watch_endpoints.go:84-106). A resourceVersion would
    not say which pod is right: it fences out whichever writes second, which may be the replacement. A change not saved
    while the address is away stays unsaved (`last` is kept) and is saved once the address is back. The check and the
    PUT are not atomic: an address that leaves between them lets one last save through, the PUT up to its 10 s bound
    (curl --max-time) old. On TERM, a pod that held the address at its last check saves once more (`final`)."""
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
    away = (
        f"iluvatar: not saving the leases: the service address {address} is not on this Pi, so this pod is not the one "
        "serving (kube-vip holds the address where the netboot pod is Ready); a change is saved once the address is back here"
    )
    return (
        "set -u\n"
        + _API
        + 'last=""\n'
        + 'away=""\n'
        + 'here=""\n'
        + "save() {\n"
        + f"  body='{body}'\n"
        + f'  code=$(api -X PUT --data-binary "$body" "$CM/{LEASES_CONFIGMAP}")\n'
        + '  if [ "$code" = 404 ]; then code=$(api -X POST --data-binary "$body" "$CM"); fi\n'
        + '  if [ "$code" = 200 ] || [ "$code" = 201 ]; then last=$sum; else echo "saving leases: HTTP $code" >&2; fi\n'
        + "}\n"
        # On TERM (the pod deleted: a Recreate, a drain, an eviction), the Service drops the pod's endpoint at once and
        # kube-vip deletes the address within about a second (Kubernetes v1.35.1 pkg/controller/endpoint/
        # endpoints_controller.go:396 with k8s.io/endpointslice v0.35.1 util/controller_utils.go:188-190; kube-vip
        # v0.9.2 pkg/manager/watch_endpoints.go:84-106), before the next check: a pod that held the address at its
        # last check saves what dnsmasq wrote since, once. An evicted pod whose address left earlier stays fenced.
        + "final() {\n"
        + f'  if [ -n "$here" ] && [ -f {lease_file} ]; then\n'
        + f"    sum=$(md5sum < {lease_file})\n"
        + '    [ "$sum" = "$last" ] || save\n'
        + "  fi\n"
        # The interval's sleep, started last ($!: a trap runs between commands, so after `&` has set it).
        + '  [ -z "${!:-}" ] || kill "$!" 2>/dev/null\n'
        + "  exit 0\n"
        + "}\n"
        + "trap final TERM\n"
        + f"{loop}\n"
        + f'  if {LOCAL_ADDRESSES} | grep -qxF {address}; then here=1; else here=""; fi\n'
        + f"  if [ -f {lease_file} ]; then\n"
        + f"    sum=$(md5sum < {lease_file})\n"
        + '    if [ "$sum" = "$last" ]; then\n'
        + "      :\n"
        + '    elif [ -z "$here" ]; then\n'
        + f'      [ -n "$away" ] || echo "{away}" >&2\n'
        + "      away=1\n"
        + "    else\n"
        + '      away=""\n'
        + "      save\n"
        + "    fi\n"
        + "  fi\n"
        # In the background and waited on: sh runs a trap only once its foreground command is done.
        + ("" if once else f"  sleep {interval} &\n  wait $!\n")
        + "done\n"
    )
