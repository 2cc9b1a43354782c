"""The records loop: hands dnsmasq the internal zone's names and the inventory's DHCP hosts as the netboot ConfigMap
changes, so an app or a machine added is served with no restart of dnsmasq, and the household keeps its DHCP and DNS.

dnsmasq cannot read them from the ConfigMap's volume itself. The kubelet updates that volume by writing a new version
folder and renaming `..data_tmp` over `..data` (Kubernetes v1.35.1 pkg/volume/util/atomic_writer.go:213-233); the
files a reader sees are links through `..data` that stay as they are (createUserVisibleFiles, :467-487, makes them
once). dnsmasq watches a `hostsdir` folder for IN_CLOSE_WRITE, IN_MOVED_TO and IN_DELETE (dnsmasq 2.90
src/inotify.c:192) and skips every event whose name starts with a dot (:272-277): the rename of `..data` is the only
event of an update, so dnsmasq would never read one (tests/netns/test_dnsmasq_records.py shows it with the real
dnsmasq). This loop copies one version of the records into folders of the pod's own (an emptyDir), each file written
beside under a dot name and renamed into place: one IN_MOVED_TO of its own name, which dnsmasq reads.

What dnsmasq then does (dnsmasq 2.90): a hosts file's names are flushed and read again (src/inotify.c:303-313), so a
name removed goes. The DHCP hosts are a `dhcp-hostsfile`, which dnsmasq reads anew only on SIGHUP: its old hosts are
freed first and the file read whole (src/dnsmasq.c:1726-1738; src/option.c:5810-5826), so a reservation changed,
moved or removed goes with it. The loop sends that SIGHUP after it put a new DHCP hosts file, to DNSMASQ_PID: it runs
in dnsmasq's own container, started beside dnsmasq by `run_script`, as the same user, so no capability and no process
namespace shared with the pod's other containers. (A `dhcp-hostsdir` would be read without a signal, but its lines are
only ever added, :327-337, and a line whose address an earlier one holds is refused, src/option.c:4072-4092.) The
SIGHUP also clears dnsmasq's DNS cache and re-reads its hostsdir; the leases stay (src/lease.c:216-234 only renames
them after the hosts). The DHCP hosts carry no `set:` tag, which that SIGHUP would crash on (plans.netboot.dnsmasq
`dhcp_hosts_file`).

When the SIGHUP is needed, dnsmasq 2.90's start, read there: until dnsmasq installs its handler (src/dnsmasq.c:87-96,
and before `exec` the child of `run_script` is still a shell), a SIGHUP has its default action and kills it: the
container ends, the household loses DHCP and DNS until the kubelet starts it again. Once the handler is in, a SIGHUP
is either honoured (after :1048) or ignored during the rest of the start (:1303-1309); an ignored one loses nothing,
for dnsmasq reads its DHCP hosts file first in its main loop, after :1048, on the event it queued itself at :587
(:1223 and :1481, `clear_cache_and_reload` :1738): a file put before then is the one it reads. So the loop signals
dnsmasq once the kernel says it catches SIGHUP (/proc/<pid>/status SigCgt), and never before: a file put while it
does not is read by that first read. Nor need the loop confirm each reload: a SIGHUP is delivered after the rename
that preceded it, and dnsmasq reads the file when it handles it, so the last file put is the last read, however
signals coalesce.

The listener watch, beside them. dnsmasq listens on the service address only while its Pi holds it (`bind-dynamic`,
plans.netboot.dnsmasq): when kube-vip adds the address, the kernel's RTM_NEWADDR wakes dnsmasq, which enumerates the
addresses and binds its DNS and TFTP sockets to the new one (dnsmasq 2.90 src/netlink.c:399-404, src/network.c:1811-
1822 newaddress, :1177-1210 create_bound_listeners). The kernel sends that message before it adds the address's local
route (Linux net/ipv4/devinet.c, __inet_insert_ifa: "Send message first, then call notifier"), and bind() refuses an
address with no local route (EADDRNOTAVAIL), which dnsmasq in bind-dynamic mode passes over in silence, to try again at
the next address event (src/network.c:923-940; the address's record stays not done, :1185-1190): with no other address
coming or going on the Pi, it never listens there, and the household, whose DHCP still works (dnsmasq's DHCP socket is
0.0.0.0:67), loses its DNS and netboot its TFTP. The watch looks every POLL_SECONDS at each address dnsmasq is to listen
on (its config's `listen-address` but the loopback's): one the kernel routes to this host (/proc/net/fib_trie), with no
socket bound to it (/proc/net/udp), at two looks in a row, is such a lost bind, since dnsmasq binds within one turn of
its loop of the event. The watch then makes an address event (NUDGE_ADDRESS added to `lo` and taken away; the
container has NET_ADMIN for dnsmasq's DHCP), at which dnsmasq binds: no restart, no gap but the lost one. After
LISTEN_NUDGES events that did not mend it (a listener dnsmasq made in part, a port something else holds) it stops
dnsmasq and the container ends with status 1, and the kubelet starts it again. The pod is not Ready meanwhile, so
kube-vip may take the address away and add it again once it is: the new dnsmasq's bind then meets the same race, under
the same watch. The failover bound counts only the first event; this path is beyond it, and the pod's restarts show it.

What the loop reads and writes, since it runs as dnsmasq's container's user with dnsmasq's capabilities: it reads the
netboot ConfigMap's volume (the program's own records) and dnsmasq's /proc status, nothing from the network; it only
copies the records as data (`cp`, `cmp`, never evaluated) into DEST, its emptyDir, and signals DNSMASQ_PID alone.
"""

from __future__ import annotations

from plans.netboot.base import LOCAL_ADDRESSES, RECORDS_DIR
from plans.netboot.dnsmasq import DHCP_HOSTS_DIR, HOSTS_DIR, RECORDS_FILE

SCRIPT = "dnsmasq-records.sh"
# dnsmasq's container's command: dnsmasq, and this loop beside it (`run_script`).
RUN_SCRIPT = "dnsmasq-run.sh"
# The netboot ConfigMap's keys the loop copies, and the folder of dnsmasq's each goes to.
HOSTS_KEY = "dnsmasq-hosts"
DHCP_HOSTS_KEY = "dnsmasq-dhcp-hosts"
FOLDERS = {HOSTS_KEY: HOSTS_DIR, DHCP_HOSTS_KEY: DHCP_HOSTS_DIR}
# The file each folder holds.
FILE = RECORDS_FILE
# How often the loop looks at the ConfigMap's volume.
POLL_SECONDS = 2
# How many times run_script starts a records loop that ended unasked again, POLL_SECONDS apart, before it gives up and
# ends dnsmasq's container (the kubelet then starts both, with its back-off): a transient failure (a fork, ENOMEM, a
# full /tmp) costs a few seconds of stale records, never the household's DHCP and DNS; one that lasts shows in the pod's
# status rather than dnsmasq serving stale records for good.
RECORDS_RESTARTS = 3
# The loopback address the listener watch adds to `lo` and takes away again, for the address event that has dnsmasq
# bind what it lost (see the module): in 127.0.0.0/8, which `lo` answers for already, so nothing reaches or leaves the
# host differently while it is there.
NUDGE_ADDRESS = "127.0.53.53"
# How many address events the listener watch makes for one lost bind before it stops dnsmasq and ends its container, so
# the kubelet starts it again: a listener dnsmasq made in part, or a port something else holds, is not mended by them.
LISTEN_NUDGES = 3


def records_script() -> str:
    """The records loop (see the module): from SRC (the netboot ConfigMap's volume) to DEST (RECORDS_DIR). ONCE set:
    one pass, then exit, and exit 1 when the records cannot be read (the init step: dnsmasq starts with them). DNSMASQ_PID
    set: the dnsmasq told (SIGHUP) to read a new DHCP hosts file."""
    puts = "\n".join(f"  put {key} {folder}" + (" reload" if key == DHCP_HOSTS_KEY else "") for key, folder in FOLDERS.items())
    keys = " ".join(f'"$from/{key}"' for key in FOLDERS)
    return f"""#!/bin/sh
# Hand dnsmasq its records as the netboot ConfigMap changes (plans.netboot.records). Generated by Iluvatar.
set -eu
# PID 1 of its container: without a handler the kernel delivers it no TERM, and the pod would wait its grace.
trap 'exit 0' TERM
copy=""
# A loop that ends unasked (an error before its loop, a failed mktemp) exits non-zero: beside dnsmasq, run_script starts
# it again, a bounded number of times (RECORDS_RESTARTS), before it ends dnsmasq's container.
trap '[ -z "$copy" ] || rm -rf "$copy"' EXIT
: "${{SRC:?}}" "${{DEST:?}}"
copy=$(mktemp -d)
snapshot() {{
  # One version of the volume, read whole into a copy: the kubelet removes the old version folder right after its swap
  # (Kubernetes v1.35.1 pkg/volume/util/atomic_writer.go:259-261), so a copy that fails while ..data has moved is read
  # again from the new one. A version folder is never changed in place: a copy that succeeds is one version.
  tried=""
  while :; do
    rm -rf "$copy" && mkdir "$copy"
    from=$SRC
    if [ -L "$SRC/..data" ]; then from="$SRC/$(readlink "$SRC/..data" || echo ..unreadable)"; fi
    if cp {keys} "$copy/" 2>/dev/null; then return 0; fi
    [ "$from" != "$tried" ] || return 1
    tried=$from
  done
}}
put() {{
  # Written under a dot name, which dnsmasq skips, and renamed into place: dnsmasq reads the whole file, once. Each
  # step only after the last succeeded (set -e does not hold in the loop's `pass || true`): never a partial file.
  mkdir -p "$DEST/$2" || return 1
  if cmp -s "$copy/$1" "$DEST/$2/{FILE}"; then return 0; fi
  cp "$copy/$1" "$DEST/$2/.{FILE}.new" && chmod 644 "$DEST/$2/.{FILE}.new" && mv -f "$DEST/$2/.{FILE}.new" "$DEST/$2/{FILE}" || return 1
  echo "iluvatar: dnsmasq reads its $2 anew ($(grep -vc '^#' "$DEST/$2/{FILE}" || true) lines)" >&2
  # The DHCP hosts: dnsmasq reads them anew on SIGHUP alone, dropping the old ones first, and only once it catches
  # the signal, which would kill it before; a file put before then is the one its first read takes (see the module).
  if [ "${{3:-}}" = reload ] && [ -n "${{DNSMASQ_PID:-}}" ] && catches_hup; then kill -HUP "$DNSMASQ_PID"; fi
}}
catches_hup() {{
  # Whether dnsmasq has its SIGHUP handler: bit 0 of SigCgt (the kernel's fs/proc/array.c render_sigset_t).
  [ -r "/proc/$DNSMASQ_PID/status" ] || return 1
  while read -r key value; do
    if [ "$key" = SigCgt: ]; then
      case "$value" in *[13579bdfBDF]) return 0 ;; esac
      return 1
    fi
  done < "/proc/$DNSMASQ_PID/status"
  return 1
}}
pass() {{
  if ! snapshot; then
    echo "iluvatar: the records under $SRC cannot be read; dnsmasq keeps the ones it has" >&2
    return 1
  fi
{puts.replace(chr(10), " &&" + chr(10))}
}}
while :; do
  if [ -n "${{ONCE:-}}" ]; then pass; break; fi
  # Each pass a poll after the last (the init step put the records dnsmasq starts with).
  sleep {POLL_SECONDS} &
  wait $!
  pass || true
done
"""


def run_script(etc: str = "/etc/iluvatar") -> str:
    """dnsmasq's container's command: dnsmasq with the container's arguments, the records loop beside it (from `etc`,
    the netboot ConfigMap's volume), which signals it (see the module), and the listener watch (see the module). The
    container lives as long as dnsmasq: its exit ends the container, with its status, and the kubelet starts it again;
    the kubelet's TERM goes to dnsmasq. A loop that ends by itself is started again, up to RECORDS_RESTARTS times; after
    that it stops dnsmasq, and the container ends with status 1; so does a dnsmasq the watch's LISTEN_NUDGES address
    events did not have listen."""
    return f"""#!/bin/sh
# dnsmasq, its records loop and its listener watch in one container (plans.netboot.records). Generated by Iluvatar.
set -u
dnsmasq "$@" &
DNSMASQ_PID=$!
export DNSMASQ_PID
term=""
trap 'term=1; kill -TERM "$DNSMASQ_PID" 2>/dev/null' TERM INT
(
  # The loop, started again when it ends unasked (RECORDS_RESTARTS); the container's TERM, passed on, ends it for good.
  child=""
  trap '[ -z "$child" ] || {{ kill -TERM "$child" 2>/dev/null; wait "$child"; }}; exit 0' TERM
  tries=0
  while :; do
    sh {etc}/{SCRIPT} &
    child=$!
    ended=0
    wait "$child" || ended=$?
    if [ "$ended" -eq 0 ]; then exit 0; fi
    tries=$((tries + 1))
    if [ "$tries" -gt {RECORDS_RESTARTS} ]; then
      # The script's own TERM, sent once dnsmasq has gone, would end this subshell with status 0 before its exit below
      # (its trap): it is ignored from here, so the container's status says the loop failed.
      trap '' TERM
      echo "iluvatar: the records loop ended (status $ended) again after {RECORDS_RESTARTS} restarts: dnsmasq stops with it, and the kubelet starts both again" >&2
      kill -TERM "$DNSMASQ_PID" 2>/dev/null || true
      exit "$ended"
    fi
    echo "iluvatar: the records loop ended (status $ended); starting it again ($tries of {RECORDS_RESTARTS}); dnsmasq serves meanwhile" >&2
    sleep {POLL_SECONDS} &
    wait $!
  done
) &
loop=$!
(
  # The listener watch (see the module): the addresses dnsmasq is to listen on are its config's listen-address lines
  # but the loopback's. A TERM while it makes an address event waits until the event's address is away (nudge).
  nudging=""
  stopping=""
  trap 'if [ -n "$nudging" ]; then stopping=1; else exit 0; fi' TERM
  conf=""
  for arg in "$@"; do
    case "$arg" in --conf-file=*) conf=${{arg#--conf-file=}} ;; esac
  done
  watched=""
  if [ -n "$conf" ] && [ -r "$conf" ]; then
    while IFS== read -r key value; do
      case "$key" in listen-address) case "$value" in 127.*) ;; *) watched="$watched $value" ;; esac ;; esac
    done < "$conf"
  fi
  [ -n "$watched" ] || exit 0
  routed_here() {{
    # Whether the kernel has its local route for $1, what bind() needs of an IPv4 address (Linux net/ipv4/af_inet.c
    # __inet_bind, inet_addr_type_table): awk reads /proc/net/fib_trie in buffered reads, in milliseconds.
    {LOCAL_ADDRESSES} | grep -qxF "$1"
  }}
  listening() {{
    # Whether a UDP socket is bound to $1 port 53: /proc/net/udp prints the address's 32 bits as one number in the
    # host's byte order, so both orders are looked for, by one grep reading the file whole.
    quad=$(printf '%s' "$1" | tr . ' ')
    set -- $quad
    grep -q -e ": $(printf '%02X%02X%02X%02X' "$4" "$3" "$2" "$1"):0035 " -e ": $(printf '%02X%02X%02X%02X' "$1" "$2" "$3" "$4"):0035 " /proc/net/udp
  }}
  nudge() {{
    # An address event, which has dnsmasq bind what it has not yet (src/dnsmasq.c:1583, src/network.c:1811-1822): a
    # loopback address of no use to anyone, added and taken away; a TERM meanwhile is held until it is away (the trap
    # above). The Pi's lo outlives the container, so one left there all the same (a SIGKILL between the two) makes the
    # next add fail: the removal alone is then the event, as dnsmasq wakes at RTM_DELADDR as at RTM_NEWADDR
    # (src/netlink.c:399-404). The event was made when the removal was, whose error is said.
    nudging=1
    ip addr add {NUDGE_ADDRESS}/32 dev lo 2>/dev/null || true
    made=0
    ip addr del {NUDGE_ADDRESS}/32 dev lo || made=$?
    nudging=""
    if [ -n "$stopping" ]; then exit 0; fi
    return "$made"
  }}
  missed=0
  nudged=0
  while :; do
    sleep {POLL_SECONDS} &
    wait $!
    lost=""
    for address in $watched; do
      if routed_here "$address" && ! listening "$address"; then lost=$address; fi
    done
    if [ -z "$lost" ]; then
      missed=0
      nudged=0
      continue
    fi
    missed=$((missed + 1))
    # dnsmasq binds within a turn of its loop of the address event: two looks in a row without a socket is a lost bind.
    if [ "$missed" -lt 2 ]; then continue; fi
    missed=0
    # Looked at after each event: only a lost bind that outlived all of them ends the container.
    if [ "$nudged" -ge {LISTEN_NUDGES} ]; then
      # A listener dnsmasq made in part (the route came between two of its binds) is one it never makes again, nor one
      # whose port something else holds: its container ends, and the kubelet starts it again (see the module). The
      # script's own TERM, sent once dnsmasq has gone, would end the watch with status 0 before its `exit 3`: it is
      # ignored from here.
      trap '' TERM
      echo "iluvatar: dnsmasq still does not listen on $lost after {LISTEN_NUDGES} address events: its container ends, and the kubelet starts it again" >&2
      kill -TERM "$DNSMASQ_PID" 2>/dev/null || true
      exit 3
    fi
    nudged=$((nudged + 1))
    if nudge; then
      echo "iluvatar: this host holds $lost but dnsmasq does not listen there (its bind was lost as the address came): an address event to bind again ($nudged of {LISTEN_NUDGES})" >&2
    else
      echo "iluvatar: this host holds $lost but dnsmasq does not listen there, and {NUDGE_ADDRESS} could not be taken away from lo for an address event ($nudged of {LISTEN_NUDGES})" >&2
    fi
  done
) &
watcher=$!
status=0
wait "$DNSMASQ_PID" || status=$?
# A TERM ends the first wait before dnsmasq has exited: wait for dnsmasq itself.
while kill -0 "$DNSMASQ_PID" 2>/dev/null; do
  status=0
  wait "$DNSMASQ_PID" || status=$?
done
kill -TERM "$loop" "$watcher" 2>/dev/null || true
looped=0
wait "$loop" || looped=$?
watch_status=0
wait "$watcher" || watch_status=$?
# Told to stop, and dnsmasq has: the status of a wait the TERM ended is the shell's 143, not dnsmasq's.
if [ -n "$term" ]; then exit 0; fi
# The watch stopped dnsmasq, which never listened on an address its Pi holds: the container fails.
if [ "$watch_status" -eq 3 ]; then exit 1; fi
# The loop kept ending by itself and stopped dnsmasq: the container fails, so the kubelet starts both again.
if [ "$looped" -ne 0 ]; then
  echo "iluvatar: the records loop ended (status $looped): dnsmasq's container ends with it" >&2
  exit 1
fi
exit "$status"
"""


def records_env(once: bool) -> list[dict[str, str]]:
    """The loop's environment in the netboot pod: the ConfigMap's volume, dnsmasq's folders, and ONCE for the init step."""
    env = [{"name": "SRC", "value": "/etc/iluvatar"}, {"name": "DEST", "value": RECORDS_DIR}]
    return env + ([{"name": "ONCE", "value": "1"}] if once else [])
