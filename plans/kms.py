"""The KMS the Ainur serve: where Talos's `kms` key reaches it (minimal until the kms branch lands)."""

from __future__ import annotations

from stacks.model import StackConfig

PORT = 4050


def endpoint(stack: StackConfig) -> str:
    assert stack.ainur is not None
    return f"https://{stack.ainur.service_ip}:{PORT}"
