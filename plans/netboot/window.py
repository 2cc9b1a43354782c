"""The discovery window: whether an unknown machine that PXE-boots now is booted to be discovered.

Discovery boots a machine no inventory entry names into Talos's maintenance mode. Left open, that would take over any
machine that PXE-boots: a household PC with the network first in its boot order, a second NIC of a known machine.
So it is opt-in per occasion: `iluvatar discover STACK --arm 30m` writes `until` (Unix seconds) into the ConfigMap
`netboot/discovery-window` with the user's kubeconfig (upgrader/internal/discovery/window.go), and this loop, beside
dnsmasq and nginx in the netboot pod, serves `/discovery/window.ipxe` while the Pi's clock is before it. boot.ipxe
fetches that file first (plans.netboot.ipxe); without it, iPXE exits and the machine's firmware boots its next device.

The bound holds without the API server: the loop keeps the last `until` it read, and removes the file when its own
clock passes it. A window longer than MAX_WINDOW_SECONDS (one written by hand) is not opened at all.
"""

from __future__ import annotations

from plans.netboot.base import DISCOVERY_WINDOW_CONFIGMAP, DISCOVERY_WINDOW_FILE, HTTP_ROOT
from plans.netboot.leases import _API

# How often the loop reads the ConfigMap: a window armed now opens within this, on one GET per period.
WINDOW_POLL_SECONDS = 5
# The longest window `discover --arm` opens (upgrader's discovery.MaxWindow), which the loop enforces too, with ten
# minutes for the user's clock being ahead of the Pi's.
MAX_WINDOW_SECONDS = 12 * 3600
CLOCK_SLACK_SECONDS = 600


def window_script(root: str = HTTP_ROOT, interval: int = WINDOW_POLL_SECONDS, once: bool = False) -> str:
    """Sidecar: serve `<root>/discovery/window.ipxe` while the discovery window is open, by this Pi's clock."""
    target = f"{root}/{DISCOVERY_WINDOW_FILE}"
    loop = "for _ in 1; do" if once else "while true; do"
    return (
        "set -u\n"
        + _API
        + f'WINDOW="{target}"\n'
        + 'mkdir -p "$(dirname "$WINDOW")"\n'
        + "open_until=0\n"
        + f"{loop}\n"
        + f'  code=$(api "$CM/{DISCOVERY_WINDOW_CONFIGMAP}")\n'
        + '  case "$code" in\n'
        + '    200) open_until=$(sed -n \'s/.*"until": *"\\([0-9]*\\)".*/\\1/p\' "$OUT"); open_until=${open_until:-0} ;;\n'
        + "    404) open_until=0 ;;\n"
        # Unreachable or refused: keep what was read last, so an open window still closes on time.
        + '    *) echo "reading the discovery window: HTTP $code; keeping open_until=$open_until" >&2 ;;\n'
        + "  esac\n"
        + "  now=$(date +%s)\n"
        + f'  if [ "$open_until" -gt $((now + {MAX_WINDOW_SECONDS + CLOCK_SLACK_SECONDS})) ]; then\n'
        + f'    echo "the discovery window until $open_until is more than {MAX_WINDOW_SECONDS} s away: not opened" >&2; open_until=0\n'
        + "  fi\n"
        + '  if [ "$open_until" -gt "$now" ]; then\n'
        + '    if [ ! -f "$WINDOW" ]; then echo "discovery window open until $open_until"; fi\n'
        + '    printf \'#!ipxe\\n# arda.discovery is armed until %s (Unix time; iluvatar discover --arm)\\n\' "$open_until" > "$WINDOW.new"\n'
        + '    mv "$WINDOW.new" "$WINDOW"\n'
        + '  elif [ -f "$WINDOW" ]; then\n'
        + '    rm -f "$WINDOW"; echo "discovery window closed"\n'
        + "  fi\n"
        + ("" if once else f"  sleep {interval}\n")
        + "done\n"
    )
