"""A netbooting maia moved to a new Ubuntu image (`ainur.piImage`), one Pi at a time behind the k3s gates (day 2).

A new image first reaches the NFS server: the pi-nfs pod restarts on it and makes every Pi a root of it beside the one
it runs, each its own export (plans.netboot.nfs), so nothing changes under a running Pi. Then, in the Ainur's chain
(components.ainur: one Pi after the other, each back and healthy before the next), for each netbooting maia:

1. `<pi>-drain`, on the first valar with k3s's admin kubectl: its Node marked as the upgrader marks a Node it cordons
   (`iluvatar.dev/cordoned`, upgrader/internal/kube/kube.go cordonedAnnotation), then cordoned and drained by
   kubectl's drain with the upgrader's settings (its `drainer`: evictions, DaemonSets left, emptyDir data dropped,
   unmanaged pods deleted), bounded by kubectl's --timeout.
2. Its boot pointer, the ConfigMap `pi-boot-<pi>` (plans.netboot.pis.boot_pointer), names the new image: the switch
   of its root. netboot-cache's pi-tftp on every disk-booting Pi then serves it the new image's boot files and a
   cmdline.txt naming its root of it.
3. `<pi>-reboot`, on the Pi: returns at once when the Pi already runs the image (its root's IMAGE_MARK); else waits
   until the Ainur serve it that cmdline.txt over TFTP (asked as its bootloader asks: the new state, seen from the
   Pi), then until they export it the root that cmdline.txt names, of the new image (mounted from the Pi with its
   options, its mark read: `export_gate`; pi-nfs exports a new image only from a start that found it built), has
   systemd reboot it 3 s later, and stops its sshd listening first, so the next step reaches only the new system.
4. Its join (plans.k3s.join_script, with the image): pulumi-command's SSH retries wait out the reboot; it fails unless
   the Pi runs the image, then waits for cloud-init, installs its k3s config (a new root has none), starts k3s, and
   returns once its Node is Ready as reported by the kubelet of this boot (its boot id: `booted_gate`). Then its k3s
   step, which carries the image too, brings the new root's k3s to the stack's version.
5. `<pi>-uncordon`, on the first valar: taints the Node (plans.k3s.NETBOOT_TAINT, which k3s sets only on a Node's
   registration), uncordons it if the mark says the roll cordoned it, then removes the mark (a Node a person cordoned
   stays so). No storage to wait for: a netbooted maia is no Longhorn Pi (stacks.storage.longhorn_pis), so its drain
   and reboot take no volume's replica.

Between 2 and 3, once, `<pi>-host-key` reads the Pi's SSH host key (HOST_KEY_SCRIPT): the steps on the Pi (3, 4)
accept only that key (components.ainur pins it), so a machine that takes the address of a rebooting Pi gets no token.
It comes after the pointer: a new card-less Pi boots only once its pointer exists, so on its first
`up` the key is read at that first boot; a running Pi is not rebooted by the pointer's move, only by step 3.

Every step is safe to run again and each is re-run by `pulumi up` when it failed or was cut short, when the image
changes (the image is in each one's script) or anything else its boot pointer carries (its cmdline.txt: the network, the
service address, the NFS options; its digest is in each script, and the reboot step reboots a Pi whose /proc/cmdline lacks
a word of it or holds one it no longer has), or when the step before it ran: the reboot step after the drain or the
pointer, the join, k3s step and uncordon after the reboot step (their `triggers`, RUN_MARK), so a roll that failed
half-way and is set back still ends with the Pi's gates and its uncordon. A Pi killed anywhere in between: before its pointer moved it boots the
old image; after, the new one; the join checks which it runs.
"""

from __future__ import annotations

import shlex

from plans import k3s
from plans.netboot import failover
from plans.netboot.base import NAMESPACE, service_ip
from plans.netboot.nfs import IMAGE_MARK
from plans.netboot.pis import MOUNT_PORT, NFS_OPTIONS, NFS_PORT, cmdline, cmdline_checked_words, export_path, image_id, pointer_digest
from stacks.model import Node, StackConfig

# The upgrader's mark on a Node it cordoned (upgrader/internal/kube/kube.go, cordonedAnnotation): the same mark, so a
# Node either cordoned is uncordoned only by the one that marked it.
CORDONED = "iluvatar.dev/cordoned"
DRAIN_SECONDS = 600  # kubectl drain's own --timeout: evictions honour PodDisruptionBudgets and are retried until then
TFTP_SECONDS = 300  # the kubelet's update of the pointers' volume (its sync period, a minute on k3s) and pi-tftp's 2 s
REBOOT_DELAY_SECONDS = 3
# pi-nfs makes a root of a new image and exports it once the image is built on its Pi (at its start, or by a reload)
# (plans.netboot.nfs.serve_script): a bound long enough for a restart the user is told to make, then the step fails.
NFS_SECONDS = 300
# The Pi's new root mounted from the Pi itself (the export admits the Pi's address alone: Ganesha's CLIENT block,
# plans.netboot.nfs.export_block) with the options its cmdline.txt gives klibc's nfsmount (plans.netboot.pis.NFS_OPTIONS),
# in the kernel client's spelling: klibc's `v3`, `tcp` and `port=` (klibc usr/kinit/nfsmount/main.c:44,76,78) are the
# kernel's vers=3, proto=tcp and port=; klibc asks MOUNT at MNT_Port when no portmapper answers, the kernel is told it;
# no lock manager (Ganesha runs none, the initramfs mounts nolock). `mount -i` keeps util-linux from handing the mount to
# a mount.nfs helper the image may lack, so the kernel reads the options and needs the server's address (addr=).
KLIBC_TO_KERNEL = {"v3": "vers=3", "tcp": "proto=tcp"}
# Review 41-3 M1: the probe is not the root, and must not block the gate's bound: `soft` with a short timeo/retrans
# (deciseconds and retries, nfs(5)) in place of the root's `hard,timeo=600,retrans=10`, so a server that stops answering
# fails its reads with an error, and each command under `timeout -s KILL` (PROBE_SECONDS: an NFS wait is killable) as
# well, since the kernel's MOUNT call's own bound is not checked here (unverified: the kernel is not mirrored).
PROBE_TIMING = ("soft", "timeo=50", "retrans=2")
PROBE_SECONDS = 60
GATE_MOUNT_OPTIONS = ",".join(
    [
        "ro",
        "nolock",
        *(KLIBC_TO_KERNEL.get(o, o) for o in NFS_OPTIONS if o.split("=")[0] not in ("hard", "soft", "timeo", "retrans")),
        *PROBE_TIMING,
        f"mountport={MOUNT_PORT}",
        "mountproto=tcp",
    ]
)
assert f"port={NFS_PORT}" in NFS_OPTIONS
# What the drain and the reboot step print on stdout, first, each time they run: a word new on every run (the kernel's
# uuid, read afresh each time: linux drivers/char/random.c, proc_do_uuid), never a secret. Pulumi stores a step's stdout
# only when the step succeeds; the next steps carry it in their `triggers` (components.ainur), so a drain runs the
# reboot step after it, and a reboot step runs the join, k3s and uncordon steps after it, whatever their own inputs.
RUN_MARK = 'echo "iluvatar: run $(cat /proc/sys/kernel/random/uuid)"'


# The Pi's SSH host key as pulumi-command's hostKey takes it (an authorized_keys line: type and key), read once, on the Pi
# (components.ainur pins it in every later step's connection). ed25519: the key Ubuntu's sshd offers
# first; pulumi-command asks for the pinned key's algorithm alone (connection.go:93).
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
HOST_KEY_SCRIPT = f"""set -eu
# iluvatar: this Pi's SSH host key, pinned in the connection of its later steps (plans.netboot.roll).
key=$(cat {HOST_KEY} 2>/dev/null) || {{ echo "iluvatar: $(hostname) has no {HOST_KEY}: its sshd's ed25519 host key, which its steps pin; look with: ls -l /etc/ssh" >&2; exit 1; }}
printf '%s\\n' "$key" | cut -d' ' -f1,2
"""


def host_key_step(node: Node) -> str:
    """The name of a netbooting maia's host-key step under its Pi: a new one for each `hostKeyRead`, so that the engine
    creates it anew with the program's connection (components.ainur.Pi)."""
    return f"host-key-{node.host_key_read}" if node.host_key_read else "host-key"


def drain_script(stack: StackConfig, node: Node, timeout: int = DRAIN_SECONDS) -> str:
    """On the first valar: mark, cordon and drain `node` before its move to the stack's image."""
    kubectl = f"sudo {k3s.KUBECTL}"
    mark = CORDONED.replace(".", "\\.")
    return f"""set -eu
# iluvatar: {node.name} moves to {image_id(stack)}, boot pointer {pointer_digest(stack, node)}: drained first (plans.netboot.roll).
{RUN_MARK}
if ! found=$({kubectl} get node {node.name} --ignore-not-found -o name); then
  echo "iluvatar: {node.name}'s Node cannot be read, so it is not drained; look with: sudo k3s kubectl get node {node.name}" >&2
  exit 1
fi
if [ -z "$found" ]; then
  echo "iluvatar: {node.name} has no Node yet (it has not joined): nothing to drain" >&2
  exit 0
fi
state=$({kubectl} get node {node.name} -o jsonpath='{{.spec.unschedulable}} {{.metadata.annotations.{mark}}}')
if [ "$state" = "true " ]; then
  echo "iluvatar: {node.name} was cordoned by someone else: drained, and left cordoned after its move" >&2
else
  # The mark before the cordon: a step cut in between leaves a Node the uncordon step uncordons, never one cordoned unmarked.
  {kubectl} annotate node {node.name} {CORDONED}=true --overwrite >/dev/null
fi
status=0
sudo timeout {timeout + 30} k3s kubectl drain {node.name} --ignore-daemonsets --delete-emptydir-data --force --grace-period=-1 --timeout={timeout}s >&2 || status=$?
if [ "$status" -ne 0 ]; then
  echo "iluvatar: {node.name} was not drained within {timeout} s (kubectl drain's status $status; a PodDisruptionBudget that allows no eviction keeps it so); look with: sudo k3s kubectl get pods -A --field-selector spec.nodeName={node.name}" >&2
  exit 1
fi
"""


def export_gate(stack: StackConfig, node: Node, timeout: int = NFS_SECONDS, probe: int = PROBE_SECONDS) -> str:
    """The reboot step's second gate: the root the new cmdline.txt names is exported to this Pi and is
    of the new image, seen as the Pi's initramfs will see it: mounted read-only from the Pi, its image mark read. TFTP
    serving the new boot files proves nothing of it: pi-tftp follows the pointer at once, pi-nfs makes the root only once it has
    seen the image built (plans.netboot.nfs.serve_script: at its start, or up to 10 s after the build)."""
    svc = service_ip(stack)
    want = image_id(stack)
    export = export_path(node, want)
    restart = f"sudo k3s kubectl -n {NAMESPACE} rollout restart deployment pi-nfs"
    kill = f"sudo timeout -s KILL {probe}"
    return f"""probe=$(mktemp -d)
exported() {{
  # The kernel's reason kept (review 41-3 M1): a refusal is pi-nfs's, a mount that cannot run is the Pi's own.
  out=$({kill} mount -i -t nfs -o {GATE_MOUNT_OPTIONS},addr={svc} {svc}:{export} "$probe" 2>&1) || {{
    status=$?
    [ "$status" != 137 ] || out="no answer within {probe} s"
    why="the mount of {svc}:{export} failed (status $status): ${{out:-no message}}. Refused ('access denied', 'No such file'): pi-nfs has no root of {want} for {node.name} yet (it makes one once the image is built on the Pi that serves them; built there and still refused, restart pi-nfs from a valar: {restart}). No answer or 'Connection refused': nothing serves NFS at {svc} (pi-nfs's pod, kube-vip). Anything else: the mount itself failed on {node.name}"
    return 1
  }}
  got=$({kill} cat "$probe{IMAGE_MARK}" 2>/dev/null || echo "a root with no image mark")
  {kill} umount "$probe" || true
  [ "$got" = {want} ] || {{ why="NFS at {svc} exports it {export} as a root of $got"; return 1; }}
}}
# wait_for's own loop, with where to look: pi-nfs's log, not k3s's journal.
end=$(( $(date +%s) + {timeout} ))
until exported; do
  if [ "$(date +%s)" -ge "$end" ]; then
    echo "iluvatar: $(hostname): waited {timeout} s for the Ainur to export {node.name} its root of {want} over NFS, mounted from {node.name} with its cmdline.txt's options; still: $why; look with (on a valar): sudo k3s kubectl -n {NAMESPACE} logs deployment/pi-nfs" >&2
    exit 1
  fi
  sleep {k3s.GATE_POLL_SECONDS}
done
rmdir "$probe" 2>/dev/null || true
"""


def reboot_script(
    stack: StackConfig, node: Node, tftp_timeout: int = TFTP_SECONDS, delay: int = REBOOT_DELAY_SECONDS, nfs_timeout: int = NFS_SECONDS
) -> str:
    """On the Pi: reboot it into the stack's image once the Ainur serve it that image's boot files; nothing when it runs it."""
    assert node.serial is not None
    want = image_id(stack)
    svc = service_ip(stack)
    expected = cmdline(stack, node).rstrip("\n")
    return f"""set -eu
{RUN_MARK}
{k3s.gate_functions(node)}have=$(cat {IMAGE_MARK} 2>/dev/null || echo "an image it does not name")
# What it runs is its pointer when its root is of the image and its kernel was given the pointer's cmdline.txt: a new
# DNS, gateway or NFS option reboots it too (review 41-2 M2), and so does a word cmdline.txt no longer has (review 41-3
# L2). The firmware puts words of its own in front of cmdline.txt's and rewrites the consoles, so what the kernel was
# given of cmdline.txt is /proc/cmdline from its first console on (cmdline.txt starts with Ubuntu's consoles:
# plans.netboot.pis.cmdline), consoles aside; compared both ways, each word list with the other. Keys named once.
expected_words={shlex.quote(" ".join(cmdline_checked_words(stack, node)))}
set -f
booted_words=$(for word in $(cat /proc/cmdline); do echo "$word"; done | sed -n '/^console=/,$p' | grep -v '^console=' || true)
missing=""
differs() {{ case " $missing " in *" ${{1%%=*}} "*) ;; *) missing="$missing ${{1%%=*}}" ;; esac; }}
for word in $expected_words; do
  printf '%s\n' "$booted_words" | grep -qxF -e "$word" || differs "$word"
done
for word in $booted_words; do
  case " $expected_words " in *" $word "*) ;; *) differs "$word" ;; esac
done
set +f
if [ "$have" = {want} ] && [ -z "$missing" ]; then
  echo "iluvatar: {node.name} already runs {want} with its cmdline.txt" >&2
  exit 0
fi
if [ "$have" = {want} ]; then
  echo "iluvatar: {node.name} runs {want}, booted with another cmdline.txt (it differs at:$missing); it reboots with its new one" >&2
else
  echo "iluvatar: {node.name} runs $have; it reboots into {want}" >&2
fi
expected={shlex.quote(expected)}
served() {{
  got=$(curl -sf --max-time 10 tftp://{svc}/{node.serial}/cmdline.txt) || {{ why="TFTP at {svc} does not serve it {node.serial}/cmdline.txt"; return 1; }}
  [ "$got" = "$expected" ] || {{ why="TFTP serves it $(printf '%s' "$got" | grep -o 'nfsroot=[^,]*' || echo 'another cmdline.txt')"; return 1; }}
}}
wait_for {tftp_timeout} "the Ainur to serve {node.name} the boot files of {want} over TFTP (netboot-cache's pi-tftp follows its pi-boot-{node.name} ConfigMap within about a minute)" served
{export_gate(stack, node, nfs_timeout)}# systemd reboots it on its own, whatever becomes of this session; then sshd stops listening, so the join that follows
# reaches the new system only (this session goes on).
status=0
sudo systemd-run --quiet --unit iluvatar-reboot --on-active={delay} systemctl reboot || status=$?
if [ "$status" -ne 0 ]; then
  echo "iluvatar: {node.name}: systemd-run could not schedule its reboot (status $status); look with: sudo systemctl status iluvatar-reboot.timer" >&2
  exit 1
fi
sudo systemctl stop ssh.socket ssh.service >/dev/null 2>&1 || true
echo "iluvatar: {node.name} reboots into {want} in {delay} s" >&2
echo "iluvatar: if {node.name} does not come back on {want} (its join then fails dialling it after {k3s.SSH_DIAL_ATTEMPTS} attempts, 4.4 to 19.6 minutes), move it back: set ainur.piImage back to the image it ran, $have (its release and sha256 as they were; remove the key if that was the default), and run pulumi up" >&2
"""


def join_check(stack: StackConfig, node: Node) -> str:
    """The lines a netbooting maia's join starts with: it runs the stack's image, or the join fails saying what to do."""
    want = image_id(stack)
    return f"""# iluvatar: a netbooted root of {want}, boot pointer {pointer_digest(stack, node)} (plans.netboot.roll).
have=$(cat {IMAGE_MARK} 2>/dev/null || echo "an image it does not name")
if [ "$have" != {want} ]; then
  echo "iluvatar: $(hostname) runs $have, not {want}: its reboot into {want} did not happen; look at its console (its bootloader reads TFTP from {service_ip(stack)}), reboot it (sudo reboot) and run pulumi up again" >&2
  exit 1
fi
"""


def uncordon_script(stack: StackConfig, node: Node) -> str:
    """On the first valar: taint `node` (plans.k3s.NETBOOT_TAINT), uncordon it after its move if the roll cordoned it (the
    mark), then remove the mark."""
    kubectl = f"sudo {k3s.KUBECTL}"
    mark = CORDONED.replace(".", "\\.")
    return f"""set -eu
# iluvatar: {node.name} moved to {image_id(stack)}, boot pointer {pointer_digest(stack, node)}: uncordoned if its drain cordoned it (plans.netboot.roll).
if ! state=$({kubectl} get node {node.name} -o jsonpath='{{.spec.unschedulable}} {{.metadata.annotations.{mark}}}'); then
  echo "iluvatar: {node.name}'s Node cannot be read, so it is not uncordoned; look with: sudo k3s kubectl get node {node.name}" >&2
  exit 1
fi
# Its taint before it takes pods again: k3s sets it only when a Node registers (plans.k3s.config), so a maia that
# registered before gets it here; --overwrite adds it without owning the Node's other taints. The kubelet cannot take it
# away (NodeRestriction refuses a node's update of its own taints: k8s v1.35.1 plugin/pkg/admission/noderestriction/
# admission.go:545-548).
{kubectl} taint node {node.name} {k3s.NETBOOT_TAINT} --overwrite >&2
if [ "${{state#* }}" = true ]; then
  {kubectl} uncordon {node.name} >&2
  # The mark after the uncordon: a step cut in between is run again and uncordons again.
  {kubectl} annotate node {node.name} {CORDONED}- >/dev/null
  echo "iluvatar: {node.name} uncordoned" >&2
else
  echo "iluvatar: {node.name} was not cordoned by its move: left as it is" >&2
fi
"""


BOOT_ID = "/proc/sys/kernel/random/boot_id"


def booted_gate(node: Node, node_timeout: int = k3s.NODE_TIMEOUT_SECONDS) -> str:
    """The last gate of a netbooting maia's join: its Node Ready as reported by the kubelet of this boot, the one on the
    new root (the join checked the root's image first): the Node's boot id, which the kubelet puts in every status it
    posts (kubernetes pkg/kubelet/nodestatus/setters.go, MachineInfo: node.Status.NodeInfo.BootID = info.BootID, from
    cadvisor's read of /proc/sys/kernel/random/boot_id), is this boot's, and its Ready condition True. A Node keeps the
    last status of the kubelet before the reboot, Ready among it, until the node lifecycle controller marks it Unknown
    after its grace period (it sets Unknown, never True: only a kubelet reports Ready), so Ready alone, or a k3s already
    running (a root it ran before starts k3s at boot and the join restarts nothing) proves nothing about the new root."""
    kubeconfig = "" if node.role == "valar" else f" --kubeconfig {k3s.AGENT_KUBECONFIG}"
    fields = '{.status.nodeInfo.bootID} {.status.conditions[?(@.type=="Ready")].status}'
    return f"""boot=$(cat {BOOT_ID})
node_booted() {{
  got=$(sudo {k3s.KUBECTL}{kubeconfig} get node {node.name} -o jsonpath='{fields}' 2>/dev/null) || {{ why="its Node cannot be read"; return 1; }}
  [ "${{got%% *}}" = "$boot" ] || {{ why="its Node's last report is from the kubelet of another boot (boot id ${{got%% *}}, this boot's $boot)"; return 1; }}
  [ "${{got#* }}" = True ] || {{ why="its Node is not Ready (${{got#* }})"; return 1; }}
}}
wait_for {node_timeout} "its Node Ready, reported by the kubelet of this boot (its new root)" node_booted
"""


def outage(stack: StackConfig, node: Node) -> k3s.Outage | None:
    """What a restart of k3s on `node` costs the service address, when it is the Ainur's one valar: every Pi's kube-vip
    renews the address's lease through its API, so the step measures how long it was down (plans.k3s.outage_functions)
    against what the service election rides out (plans.netboot.failover); None on any other Pi."""
    if node.role != "valar" or len(stack.by_role("valar")) != 1:
        return None
    dropped, _ = failover.address_dropped_within()
    return k3s.Outage(
        int(failover.api_outage_ridden()), int(dropped), failover.address_back_within(), k3s.services_api(stack) or k3s.KUBERNETES_SERVICE_URL
    )


def join_script(stack: StackConfig, node: Node) -> str:
    """A Pi's join as the program registers it (components.ainur, plans.rollout): a netbooting maia's checks first that
    it runs the stack's image, and carries the image, so a new one runs it again after the Pi's reboot, and ends once
    its Node is Ready since the Pi booted. On the one valar it measures the API's outage (`outage`)."""
    rejoin = k3s.server_url(stack) if k3s.is_first_server(stack, node) else None
    if node.boot != "netboot":
        return k3s.join_script(node, rejoin=rejoin, outage=outage(stack, node))
    return k3s.join_script(node, rejoin=rejoin, check=join_check(stack, node), gate=booted_gate(node))


def k3s_script(stack: StackConfig, node: Node, renewing: str | None = None) -> str:
    """A Pi's k3s step as the program registers it: a netbooting maia's names its image, so the step runs again on a
    new root (a root of an image it ran before may hold an older k3s). `renewing`: the end of its k3s certificates
    its trigger renews (plans.rollout.renewing_end). On the one valar it measures the API's outage (`outage`)."""
    head = f"# iluvatar: a netbooted root of {image_id(stack)} (plans.netboot.roll).\n" if node.boot == "netboot" else ""
    return k3s.upgrade_script(stack, node, snapshot=k3s.is_first_server(stack, node), head=head, renewing=renewing, outage=outage(stack, node))


# The netboot pod serves the LAN's DHCP and DNS (plans.netboot.objects: the one-replica Deployment `netboot`). A k3s
# restart on the Pi it runs on can cost it (it tolerates a NotReady Node for plans.netboot.pods EVICTION_SECONDS), and
# on a one-valar Ainur the valar's restart takes the API away: so after each Pi's k3s step the chain waits, within
# NETBOOT_READY_SECONDS, for the Deployment to be available again before the next Pi restarts.
NETBOOT_DEPLOYMENT = "netboot"
NETBOOT_READY_SECONDS = 300


def netboot_ready_script(node: Node, wait_seconds: int = NETBOOT_READY_SECONDS, kubectl: str = f"sudo {k3s.KUBECTL}") -> str:
    """Run over SSH on a valar (the API VIP's), after Pi `node`'s k3s step: wait, bounded, for the netboot Deployment
    (the LAN's DHCP and DNS) to be available; a cluster without it yet (the first bring-up: the netboot objects come
    after the Pis) has nothing to wait for. `kubectl rollout status` waits for the updated replica to be available."""
    deployment = f"deployment/{NETBOOT_DEPLOYMENT}"
    look = f"look with: sudo k3s kubectl -n {NAMESPACE} get pods -o wide"
    return f"""set -eu
kc() {{ {kubectl} -n {NAMESPACE} "$@"; }}
if ! found=$(kc get {deployment} --ignore-not-found -o name); then
  echo "iluvatar: after {node.name}'s k3s step the Ainur's API does not answer, so whether the netboot pod (the LAN's DHCP and DNS) is back is not known; {look}" >&2
  exit 1
fi
if [ -z "$found" ]; then
  echo "iluvatar: no netboot Deployment yet (it comes after the Pis): nothing to wait for after {node.name}'s k3s step" >&2
  exit 0
fi
if ! kc rollout status {deployment} --timeout={wait_seconds}s >/dev/null; then
  echo "iluvatar: waited {wait_seconds} s after {node.name}'s k3s step for the netboot pod (the LAN's DHCP and DNS) to be available; {look}" >&2
  exit 1
fi
echo "iluvatar: the netboot pod (the LAN's DHCP and DNS) is available after {node.name}'s k3s step" >&2
"""
