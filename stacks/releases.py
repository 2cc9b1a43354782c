"""The releases a new stack starts from: what `iluvatar init` writes, the shipped stacks run and `iluvatar --version` names.

Each is a release the tests check the program against (the Talos check's 1.12.4 node, the control planes at Kubernetes
1.34 and the k3s minor in tests/kube); a stack may name any other release the rules accept (stacks.rules.TALOS_KUBERNETES),
and `pulumi up` rolls a change to it one machine at a time (docs/day2.md). tests/stacks/test_releases.py holds the
shipped stacks and the examples to these.
"""

from __future__ import annotations

TALOS = "v1.12.4"
KUBERNETES = "v1.34.1"
K3S = "v1.33.6+k3s1"
