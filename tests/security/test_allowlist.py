"""fhirServer allow-listing: registered clients, development mode, and SSRF refusals."""

from __future__ import annotations

import pytest

from app.security.allowlist import check_fhir_server
from app.security.clients import RegisteredClient
from app.security.errors import FhirServerNotAllowed
from tests.security.helpers import make_client

ALLOWED = "https://ehr.example/fhir"


def registered(*servers: str) -> RegisteredClient:
    return make_client(fhir_servers=servers)


def check_for_client(url: str, *servers: str) -> str:
    return check_fhir_server(
        url, client=registered(*servers), dev_servers=(), auth_disabled=False
    )


def check_in_dev(url: str, *dev_servers: str) -> str:
    return check_fhir_server(
        url, client=None, dev_servers=dev_servers, auth_disabled=True
    )


class TestRegisteredClient:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("https://ehr.example/fhir", "https://ehr.example/fhir"),
            ("https://ehr.example/fhir/", "https://ehr.example/fhir"),
            ("HTTPS://EHR.Example/fhir", "https://ehr.example/fhir"),
            ("https://ehr.example:443/fhir", "https://ehr.example/fhir"),
            ("https://ehr.example/fhir/r4", "https://ehr.example/fhir/r4"),
        ],
    )
    def test_listed_server_is_normalised(self, url: str, expected: str) -> None:
        assert check_for_client(url, ALLOWED + "/") == expected

    def test_listed_entry_with_default_port_matches(self) -> None:
        assert (
            check_for_client("https://ehr.example/fhir", "https://ehr.example:443/fhir")
            == ALLOWED
        )

    def test_non_default_port_is_kept(self) -> None:
        url = "http://127.0.0.1:8080/fhir"
        assert check_for_client(url + "/", url) == url

    @pytest.mark.parametrize(
        "url",
        [
            "https://ehr.example/fhir-evil",
            "https://ehr.example/fhi",
            "https://ehr.example/",
            "https://ehr.example",
            "https://ehr.example/FHIR",
            "http://ehr.example/fhir",
            "https://ehr.example:8443/fhir",
            "https://fhir.ehr.example/fhir",
            "https://ehr.example.evil.com/fhir",
            "https://evil-ehr.example/fhir",
        ],
    )
    def test_unlisted_server_is_refused(self, url: str) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_for_client(url, ALLOWED)

    def test_host_suffix_attack(self) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_for_client(
                "https://fhir.example.org.evil.com", "https://fhir.example.org"
            )

    def test_loopback_port_not_listed(self) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_for_client("http://127.0.0.1:9000/fhir", "http://127.0.0.1:8080/fhir")

    def test_loopback_is_not_free_for_a_registered_client_in_dev_mode(self) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_fhir_server(
                "http://localhost:8080/fhir",
                client=registered(ALLOWED),
                dev_servers=("http://localhost:8080/fhir",),
                auth_disabled=True,
            )

    def test_empty_list_reaches_nothing(self) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_for_client(ALLOWED)

    def test_bad_entry_does_not_break_others(self) -> None:
        assert (
            check_for_client(ALLOWED, "not a url", "http://169.254.169.254/", ALLOWED)
            == ALLOWED
        )

    def test_message_does_not_echo_the_url(self) -> None:
        url = "https://ehr.example/fhir-sentinel-7731"
        with pytest.raises(FhirServerNotAllowed) as caught:
            check_for_client(url, ALLOWED)
        assert "sentinel" not in caught.value.message


class TestDevelopmentMode:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://localhost:8080/fhir/", "http://localhost:8080/fhir"),
            ("http://127.0.0.1/fhir", "http://127.0.0.1/fhir"),
            ("http://127.8.9.10:9000", "http://127.8.9.10:9000"),
            ("http://[::1]:8080/fhir", "http://[::1]:8080/fhir"),
        ],
    )
    def test_loopback_is_allowed(self, url: str, expected: str) -> None:
        assert check_in_dev(url) == expected

    def test_listed_dev_server_is_allowed(self) -> None:
        assert check_in_dev(
            "https://hapi.example.test/baseR4/", "https://hapi.example.test/baseR4"
        ) == ("https://hapi.example.test/baseR4")

    @pytest.mark.parametrize(
        "url",
        [
            "https://hapi.example.test/other",
            "http://10.0.0.5/fhir",
            "http://192.168.1.2/fhir",
            "http://localhost.evil.com/fhir",
        ],
    )
    def test_other_hosts_are_refused(self, url: str) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_in_dev(url, "https://hapi.example.test/baseR4")

    def test_no_client_with_auth_enabled_reaches_nothing(self) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_fhir_server(
                "http://127.0.0.1/fhir",
                client=None,
                dev_servers=(),
                auth_disabled=False,
            )


class TestAlwaysRefused:
    @pytest.mark.parametrize(
        "url",
        [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.170.2/v2/credentials",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.GOOGLE.INTERNAL/computeMetadata/v1/",
            "http://metadata.google.internal./computeMetadata/v1/",
            "http://100.100.100.200/latest/meta-data/",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://[fe80::1]/fhir",
            "http://[fe80::1%25eth0]/fhir",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://0.0.0.0:8080/fhir",
            "http://0.1.2.3/fhir",
            "http://[::]:8080/fhir",
            "http://2852039166/",
            "http://0xa9fea9fe/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://0251.0376.0251.0376/",
        ],
    )
    def test_metadata_and_link_local(self, url: str) -> None:
        # Listed and in dev mode too: these are refused whatever the configuration says.
        with pytest.raises(FhirServerNotAllowed):
            check_for_client(url, url)
        with pytest.raises(FhirServerNotAllowed):
            check_in_dev(url, url)

    @pytest.mark.parametrize(
        "url",
        [
            "file:///etc/passwd",
            "gopher://127.0.0.1:6379/_INFO",
            "ftp://127.0.0.1/fhir",
            "javascript:alert(1)",
            "//127.0.0.1/fhir",
            "127.0.0.1/fhir",
            "",
        ],
    )
    def test_scheme_must_be_http_or_https(self, url: str) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_in_dev(url, url)

    @pytest.mark.parametrize(
        "url",
        [
            "http://user@127.0.0.1/fhir",
            "http://user:pass@127.0.0.1/fhir",
            "http://127.0.0.1@evil.example/fhir",
            "http://127.0.0.1/fhir?_format=json",
            "http://127.0.0.1/fhir?",
            "http://127.0.0.1/fhir#frag",
            "http://127.0.0.1/fhir/../admin",
            "http://127.0.0.1/fhir/%2e%2e/admin",
            "http://127.0.0.1/fhir%2f..%2fadmin",
            "http://127.0.0.1/fhir\\..\\admin",
            "http://127.0.0.1 /fhir",
            "http://127.0.0.1/fhir\r\nHost: evil",
            "http://127.0.0.1:99999/fhir",
            "http://127.0.0.1:0/fhir",
            "http://127.0.0.1:abc/fhir",
            "http://ehr_.exämple/fhir",
        ],
    )
    def test_structurally_unsafe_urls(self, url: str) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_in_dev(url, url)

    def test_dot_segment_prefix_escape_for_a_client(self) -> None:
        with pytest.raises(FhirServerNotAllowed):
            check_for_client("https://ehr.example/fhir/../admin", ALLOWED)
