"""The RTMPS settings: off by default; when its port is set, a certificate and key that load
together are needed at start-up, with a message naming the variable; the URLs of the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from config import Settings, SettingsError
from tests.tls_support import CertificateFiles, make_certificate


@pytest.fixture
def files(tmp_path: Path) -> CertificateFiles:
    return make_certificate(tmp_path, "liverelay")


def env(files: CertificateFiles, **more: str) -> dict[str, str]:
    return {
        "LIVERELAY_RTMPS_PORT": "1936",
        "LIVERELAY_TLS_CERT_FILE": str(files.cert),
        "LIVERELAY_TLS_KEY_FILE": str(files.key),
        **more,
    }


def test_rtmps_is_off_by_default() -> None:
    settings = Settings.from_env({})
    assert not settings.rtmps_enabled
    assert settings.rtmps_base_url() is None


def test_rtmps_listens_beside_rtmp_with_a_certificate(files: CertificateFiles) -> None:
    settings = Settings.from_env(env(files, LIVERELAY_RTMP_HOST="10.1.2.3"))
    assert settings.rtmps_enabled
    assert settings.rtmps_listen_host == "10.1.2.3"
    assert settings.rtmps_base_url() == "rtmps://10.1.2.3:1936"
    assert settings.rtmps_base_url(bound_port=443) == "rtmps://10.1.2.3"


def test_the_public_rtmps_url_and_host_are_taken_as_given(files: CertificateFiles) -> None:
    settings = Settings.from_env(
        env(
            files,
            LIVERELAY_RTMPS_HOST="127.0.0.1",
            LIVERELAY_PUBLIC_RTMPS_URL="rtmps://live.example.com/",
        )
    )
    assert settings.rtmps_listen_host == "127.0.0.1"
    assert settings.rtmps_base_url(1936) == "rtmps://live.example.com"


@pytest.mark.parametrize("missing", ["LIVERELAY_TLS_CERT_FILE", "LIVERELAY_TLS_KEY_FILE"])
def test_the_port_without_a_certificate_or_key_is_refused(
    files: CertificateFiles, missing: str
) -> None:
    values = env(files)
    del values[missing]
    with pytest.raises(SettingsError, match=f"LIVERELAY_RTMPS_PORT is set: {missing} is needed"):
        Settings.from_env(values)


def test_a_missing_file_is_refused(files: CertificateFiles, tmp_path: Path) -> None:
    absent = str(tmp_path / "absent.pem")
    with pytest.raises(SettingsError, match=r"LIVERELAY_TLS_KEY_FILE=.*is not a readable file"):
        Settings.from_env(env(files, LIVERELAY_TLS_KEY_FILE=absent))


def test_a_file_that_is_no_certificate_is_refused(files: CertificateFiles) -> None:
    files.cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    with pytest.raises(SettingsError, match=r"LIVERELAY_TLS_CERT_FILE=.* do not load"):
        Settings.from_env(env(files))


def test_a_key_of_another_certificate_is_refused(files: CertificateFiles, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = make_certificate(tmp_path / "other", "other")
    with pytest.raises(SettingsError, match="do not load"):
        Settings.from_env(env(files, LIVERELAY_TLS_KEY_FILE=str(other.key)))


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(
    files: CertificateFiles, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(SettingsError, match="encrypted"):
        Settings.from_env(env(files, LIVERELAY_TLS_KEY_FILE=str(encrypted)))


@pytest.mark.parametrize("port", ["-2", "65536"])
def test_a_port_out_of_range_is_refused(files: CertificateFiles, port: str) -> None:
    with pytest.raises(SettingsError, match="LIVERELAY_RTMPS_PORT must be a port number"):
        Settings.from_env(env(files, LIVERELAY_RTMPS_PORT=port))


def test_the_rtmp_port_is_refused_for_rtmps(files: CertificateFiles) -> None:
    with pytest.raises(SettingsError, match="must differ from LIVERELAY_RTMP_PORT"):
        Settings.from_env(env(files, LIVERELAY_RTMPS_PORT="1935"))


@pytest.mark.parametrize("given", ["LIVERELAY_TLS_CERT_FILE", "LIVERELAY_TLS_KEY_FILE"])
def test_a_certificate_without_the_port_is_refused(files: CertificateFiles, given: str) -> None:
    """Files set for RTMPS that would not be served: the operator meant to turn it on."""
    values = {given: env(files)[given]}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(values)
    assert str(raised.value) == (
        f"{given} is set but LIVERELAY_RTMPS_PORT is not: set the port to serve RTMPS, "
        "or unset the certificate and key"
    )
