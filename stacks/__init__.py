"""Stacks: the typed stack config model (the inventory), its validation and loading.

Pure Python with no Pulumi import, except `stacks.pulumi_source`, the program's one
reader of `pulumi.Config`.
"""

from stacks.errors import Problem, StackConfigError
from stacks.load import StackFile, StackFileError, load_stack_file, parse_stack, read_stack_file
from stacks.model import AddressRange, Ainur, App, AppService, Arda, Cloudflare, Edge, EdgeAddresses, Network, Node, StackConfig, Vlan

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
