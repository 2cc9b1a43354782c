"""Every URL key of the stack model refuses an IPv4 address in brackets at the key (stacks.fields.unbracketed_url).

Python's urlsplit raises on `https://[10.0.0.1]/` (3.11.4 on), and every rule that reads a URL key splits it: a key
without the check crashes validate with a traceback. The property below finds the URL keys itself (every field of every
model that takes one of the probes), so a URL key added later without the check fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

import pydantic
import pytest
from pydantic import TypeAdapter, ValidationError

from stacks.fields import Model

# A URL of each shape some key takes, at an IPv4 address: a key that takes one is a URL key.
_PROBES = (
    "https://10.0.0.1",
    "https://10.0.0.1/homelab.git",
    "https://10.0.0.1/ubuntu-arm64+raspi.img.xz",
    "s3://10.0.0.1/bucket",
    "nfs://10.0.0.1/volume1",
)


# A key that takes free text takes a probe too: a URL key is one that refuses text that is no URL, or one whose name says
# URL (backup.target, free text to the model, split by stacks.data.parse_target).
_URL_NAMED = re.compile(r"(url|target|heartbeat)$", re.IGNORECASE)


def _refuses(adapter: TypeAdapter[Any], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return True
    return False


def _models(root: type[Model] = Model) -> Iterator[type[Model]]:
    import stacks.data_model
    import stacks.logs_model
    import stacks.model
    import stacks.remote_model  # noqa: F401  (each defines models; imported so __subclasses__ sees them)

    seen: set[type[Model]] = set()
    stack: list[type[Model]] = [root]
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        stack.extend(cls.__subclasses__())


def _url_keys() -> list[tuple[str, TypeAdapter[Any], str]]:
    keys = []
    for cls in _models():
        for name, field in cls.model_fields.items():
            typed: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
            adapter: TypeAdapter[Any] = TypeAdapter(typed)
            for probe in _PROBES:
                try:
                    adapter.validate_python(probe)
                except (ValidationError, pydantic.PydanticSchemaGenerationError):
                    continue
                if _refuses(adapter, "plain text") or _URL_NAMED.search(name):
                    keys.append((f"{cls.__name__}.{name}", adapter, probe))
                break
    return keys


URL_KEYS = _url_keys()


def test_the_url_keys_are_found() -> None:
    # The keys known when this was written: the property covers at least them.
    names = {name for name, _, _ in URL_KEYS}
    assert {
        "Backup.target",
        "Monitoring.heartbeat",
        "HeadscaleSettings.url",
        "GitMirror.url",
        "GitOps.repo_url",
        "PiImage.url",
        "NtfyReceiver.url",
        "WebhookReceiver.url",
    } <= names


@pytest.mark.parametrize(("name", "adapter", "probe"), URL_KEYS, ids=[name for name, _, _ in URL_KEYS])
def test_a_url_key_refuses_a_bracketed_ipv4_address(name: str, adapter: TypeAdapter[Any], probe: str) -> None:
    bracketed = probe.replace("10.0.0.1", "[10.0.0.1]")
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(bracketed)
    assert f"{bracketed}: an IPv4 address is written without brackets (they hold an IPv6 address alone); write {probe}" in str(caught.value)
