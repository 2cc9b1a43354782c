#!/usr/bin/env python3
"""Benchmark the upgrader: its own overhead per node, beyond the time the node itself is down.

A rolling Talos upgrade of 3 control planes and 2 workers runs against the scripted Talos API
stand-in (tools/talos-api), one `upgrader apply` per node as Pulumi chains them, in two variants:
Talos 1.12 nodes (the legacy upgrade API, which reboots by itself) and Talos 1.13 nodes (the
Lifecycle API, then the upgrader's reboot). Each node is scripted to stay down for `--down-ms`;
the overhead is each command's wall time minus that: connecting, reading the node, the etcd
checks, pulling, the upgrade call, noticing the node back (the upgrader polls every 0.5 s),
checking its version and health, and the process start. Kubernetes is left out (--no-kubernetes):
its drain takes what the pods take. Pulumi runs the binary through `iluvatar upgrader`, whose own
start (Python, the CLI's imports, the build cache check, then exec) is measured apart.

    .venv/bin/python scripts/benchmark_upgrader.py                 # prints a Markdown table
    .venv/bin/python scripts/benchmark_upgrader.py --down-ms 5000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iluvatar import upgrader  # noqa: E402
from tools.talos_api import VANILLA, addresses, installer, node, scenario, talos_api  # noqa: E402

ORDER = [("valinor-1", "controlplane"), ("valinor-2", "controlplane"), ("valinor-3", "controlplane"), ("istari-1", "worker"), ("istari-2", "worker")]
VARIANTS = {"Talos 1.12 → 1.13 (legacy Upgrade)": ("v1.12.4", "v1.13.0"), "Talos 1.13 → 1.13.1 (LifecycleService + Reboot)": ("v1.13.0", "v1.13.1")}


def rolling_upgrade(binary: Path, start: str, target: str, down_ms: int) -> list[tuple[str, float]]:
    """Each node's apply wall time, in seconds, for one rolling upgrade from `start` to `target`."""
    ips = addresses(len(ORDER))
    nodes = [node(name, ip, role, start, upgrade={"downMs": down_ms}) for (name, role), ip in zip(ORDER, ips, strict=True)]
    timings = []
    with talos_api(scenario(nodes)) as api:
        configs = {role: api.config(role, installer(VANILLA, target)) for role in ("controlplane", "worker")}
        for name, role in ORDER:
            stdin = json.dumps({"talosconfig": api.talosconfig_text(), "machineConfig": configs[role]})
            args = [str(binary), "apply", "--node", api.node_arg(name), "--role", role, "--timeout", "5m", "--no-kubernetes"]
            began = time.monotonic()
            result = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=600)
            elapsed = time.monotonic() - began
            if result.returncode != 0:
                raise SystemExit(f"{name}: apply failed:\n{result.stderr}")
            timings.append((name, elapsed))
        if {s["version"] for s in api.state().values()} != {target}:
            raise SystemExit(f"not every node runs {target}: {api.state()}")
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--down-ms", type=int, default=2000, help="how long each node is scripted to stay down (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="rolling upgrades per variant (default 3)")
    args = parser.parse_args()

    binary = upgrader.build()
    down = args.down_ms / 1000
    print(f"Per-node overhead of `upgrader apply` beyond {down:g} s down, 3 control planes + 2 workers, {args.repeat} runs each\n")
    print("| Variant | Node | Wall (median) | Overhead (median) | Overhead (max) |")
    print("| --- | --- | ---: | ---: | ---: |")
    worst = 0.0
    for label, (start, target) in VARIANTS.items():
        runs = [rolling_upgrade(binary, start, target, args.down_ms) for _ in range(args.repeat)]
        for i, (name, _) in enumerate(ORDER):
            walls = [run[i][1] for run in runs]
            overheads = [w - down for w in walls]
            worst = max(worst, *overheads)
            print(f"| {label} | {name} | {statistics.median(walls):.2f} s | {statistics.median(overheads):.2f} s | {max(overheads):.2f} s |")
    wrapper = []
    for _ in range(5):
        began = time.monotonic()
        subprocess.run([str(Path(sys.executable).parent / "iluvatar"), "upgrader", "help"], capture_output=True, timeout=600)
        wrapper.append(time.monotonic() - began)
    print(f"\nWorst overhead: {worst:.2f} s per node (goal: under 30 s); `iluvatar upgrader` adds {statistics.median(wrapper):.2f} s per command.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
