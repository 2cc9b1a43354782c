"""Stacks: the typed stack config model (the inventory), its validation and loading.

Pure Python with no Pulumi import, except `stacks.pulumi_source`, the program's one
reader of `pulumi.Config`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stacks.errors import Problem, StackConfigError, StackFileError
    from stacks.load import StackFile, load_stack_file, parse_stack, read_stack_file
    from stacks.model import AddressRange, Ainur, App, AppService, Arda, Cloudflare, Edge, EdgeAddresses, Network, Node, StackConfig, Vlan

# Each name is loaded from its module when first asked for (PEP 562), not when the package is: importing any
# `stacks.<module>` runs this file first, and loading the model (pydantic) and the loader (jsonschema) here cost every
# process that needs neither ~0.3 s of CPU (`iluvatar --help`, `iluvatar power bmc`, which `pulumi up` runs).
_HOMES = {
    **dict.fromkeys(("Problem", "StackConfigError", "StackFileError"), "stacks.errors"),
    **dict.fromkeys(("StackFile", "load_stack_file", "parse_stack", "read_stack_file"), "stacks.load"),
    **dict.fromkeys(
        ("AddressRange", "Ainur", "App", "AppService", "Arda", "Cloudflare", "Edge", "EdgeAddresses", "Network", "Node", "StackConfig", "Vlan"),
        "stacks.model",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once: the next `from stacks import name` finds it without this call
    return value


__all__ = [
    "AddressRange",
    "Ainur",
    "App",
    "AppService",
    "Arda",
    "Cloudflare",
    "Edge",
    "EdgeAddresses",
    "Network",
    "Node",
    "Problem",
    "StackConfig",
    "StackConfigError",
    "StackFile",
    "StackFileError",
    "Vlan",
    "load_stack_file",
    "parse_stack",
    "read_stack_file",
]
