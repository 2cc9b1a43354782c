"""The lease scripts: dnsmasq's leases kept in the cluster (a ConfigMap), restored before dnsmasq
starts and saved back within seconds of every change, so a restart or a move to another Pi never
offers an address a client still holds."""

from __future__ import annotations

from plans.netboot.base import LEASE_FILE, NAMESPACE

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


def restore_leases_script(lease_file: str = LEASE_FILE) -> str:
    """Init step: copy the lease database from the cluster (ConfigMap) to where dnsmasq reads it."""
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
