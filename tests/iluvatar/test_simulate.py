"""The mock run's reading of inputs: numbers as the providers read them, secrets marked."""

from __future__ import annotations

from typing import Any

from iluvatar.simulate import SecretValue, _unwrap


def test_whole_doubles_read_as_integers_and_fractions_stay() -> None:
    # Pulumi's wire format has only doubles: the program's `replicas: 1` arrives as 1.0.
    read = _unwrap({"replicas": 1.0, "ratio": 0.0025, "ports": [80.0, -1.0], "flag": True, "huge": 2.0**60, "name": "x"})
    assert read == {"replicas": 1, "ratio": 0.0025, "ports": [80, -1], "flag": True, "huge": 2.0**60, "name": "x"}
    kinds: dict[str, Any] = {k: type(v) for k, v in read.items()}
    assert kinds == {"replicas": int, "ratio": float, "ports": list, "flag": bool, "huge": float, "name": str}
    assert [type(p) for p in read["ports"]] == [int, int]


def test_secrets_inside_are_marked_and_read_the_same_way() -> None:
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": {"port": 6443.0}}
    read = _unwrap({"spec": secret})
    assert read == {"spec": SecretValue({"port": 6443})}
    assert type(read["spec"].value["port"]) is int
