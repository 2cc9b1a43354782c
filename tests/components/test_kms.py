"""The KMS component under the mock runtime: its key protected and secret end to end, its certificate for the address."""

from __future__ import annotations

from iluvatar.simulate import Simulation
from tests.edit import RK1
from tests.sims import simulated


def test_the_key_is_protected_and_secret_end_to_end(homelab: Simulation) -> None:
    key = homelab.one("random:index/randomBytes:RandomBytes", "kms-key")
    assert key.protect is True
    assert key.inputs == {"length": 32}
    assert set(key.additional_secret_outputs) >= {"base64", "hex"}
    secret = homelab.one("kubernetes:core/v1:Secret", "kms-secret-kms-key")
    assert secret.secret_inputs == ("stringData",)
    assert set(secret.additional_secret_outputs) >= {"data", "stringData"}
    # Deleted with the Ainur, as every object of theirs; the key itself is not a Kubernetes object and stays.
    assert secret.deleted_with != ""
    assert key.deleted_with == ""


def test_the_certificate_names_the_endpoints_address(homelab: Simulation) -> None:
    request = homelab.one("tls:index/certRequest:CertRequest", "kms-tls-request")
    assert request.inputs["ipAddresses"] == ["192.168.0.14"]
    assert request.inputs["dnsNames"] == ["kms.iluvatar.home.arpa"]
    # Dex's certificate, issued before addresses could be named, keeps its inputs as they were.
    assert "ipAddresses" not in homelab.one("tls:index/certRequest:CertRequest", "identity-dex-request").inputs


def test_without_the_ainur_there_is_no_kms() -> None:
    assert [r.name for r in simulated(RK1).registrations if r.name.startswith("kms")] == []
