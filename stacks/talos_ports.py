"""Ports Talos serves on every Arda machine that both the rules (stacks/) and the renders (plans/) name, kept here so
that neither imports the other for a number."""

from __future__ import annotations

# KubePrism, Talos's load balancer in front of the API servers on each machine, at Talos's default port
# (pkg/machinery/constants/constants.go:1326 at v1.14.0-rc.1): Iluvatar's Cilium values reach the API server there.
KUBEPRISM_PORT = 7445
