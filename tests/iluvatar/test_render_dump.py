"""iluvatar.render writes a CustomResourceDefinition it wrote before in this process from its text, not again."""

from __future__ import annotations

from typing import Any

import pytest

from iluvatar import render
from plans import yamltext


def _crd(value: Any) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "spec": {"versions": [{"default": value}]}}


def test_a_crd_written_before_is_its_text_and_a_value_of_another_type_is_written_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[Any] = []
    dump = yamltext.dump

    def counted(doc: Any, sort_keys: bool = False) -> str:
        written.append(doc)
        return dump(doc, sort_keys)

    monkeypatch.setattr(render, "_CRD_TEXT", {})
    monkeypatch.setattr(yamltext, "dump", counted)
    # The same document twice: written once, the same text both times.
    assert render._dump(_crd(1)) == render._dump(_crd(1)) == dump(_crd(1), sort_keys=True)
    assert written == [_crd(1)]
    # Equal as Python compares them, other YAML: each written as it is.
    for value, shown in (("1", "default: '1'"), (1.0, "default: 1.0"), (True, "default: true")):
        assert shown in render._dump(_crd(value))
    assert len(written) == 4
    # Any other kind is written each time.
    service = {"apiVersion": "v1", "kind": "Service"}
    assert render._dump(service) == render._dump(service)
    assert len(written) == 6


def test_the_kept_texts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "_CRD_TEXT", {})
    for n in range(render._CRD_TEXTS + 1):
        render._dump(_crd(n))
    assert list(render._CRD_TEXT) == [repr(_crd(render._CRD_TEXTS))]
