"""checks.pg_identity: servers compared by identity, never by host strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.pg_identity import (
    DEFAULT_PORT,
    LOOPBACK,
    Endpoint,
    HostSpec,
    ServerIdentity,
    Transport,
    libpq_hosts,
    proven_distinct,
    same_server_evidence,
    tcp_endpoint,
    unix_endpoint,
)

STARTED = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def _server(name: str, *endpoints: Endpoint, start: datetime | None = STARTED, sysid: int | None = 7,
            reached: bool = True) -> ServerIdentity:
    return ServerIdentity(target=name, endpoints=frozenset(endpoints), postmaster_start=start,
                          system_identifier=sysid, reached=reached)


class TestEndpoints:
    @pytest.mark.parametrize("address", ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "::ffff:127.0.0.1"])
    def test_every_loopback_address_is_one_machine(self, address: str) -> None:
        """127.0.0.0/8, ::1 and the IPv4-mapped loopback are the same machine: one endpoint per port."""
        assert tcp_endpoint(address, 5432) == Endpoint(Transport.TCP, LOOPBACK, 5432)

    def test_ipv4_mapped_ipv6_is_the_ipv4_address(self) -> None:
        """A server reporting ::ffff:10.0.0.5 is the one reached at 10.0.0.5."""
        assert tcp_endpoint("::ffff:10.0.0.5", 5432) == tcp_endpoint("10.0.0.5", 5432)

    def test_ipv6_scope_and_spelling_do_not_matter(self) -> None:
        """fe80::1%eth0 and FE80:0::1 are one address."""
        assert tcp_endpoint("fe80::1%eth0", 5432) == tcp_endpoint("FE80:0::1", 5432)

    def test_ports_tell_servers_on_one_machine_apart(self) -> None:
        assert tcp_endpoint("127.0.0.1", 5432) != tcp_endpoint("127.0.0.1", 5433)

    def test_unix_socket_directories_are_normalised(self) -> None:
        assert unix_endpoint("/var/run//postgresql/", 5432) == unix_endpoint("/var/run/postgresql", 5432)


class TestSameServer:
    def test_same_start_time_is_the_same_server(self) -> None:
        """Reached through different addresses (a proxy, a DNS alias), one postmaster is one server."""
        a = _server("scratch", tcp_endpoint("10.0.0.5", 5432), sysid=None)
        b = _server("production", tcp_endpoint("10.0.0.9", 6432), sysid=None)
        assert any("start time" in e for e in same_server_evidence(a, b))
        assert not proven_distinct(a, b)

    def test_shared_endpoint_is_the_same_server(self) -> None:
        """localhost (resolved to ::1 and 127.0.0.1) and 127.0.0.1 on one port: one server."""
        a = _server("scratch", tcp_endpoint("127.0.0.1", 5432), start=STARTED)
        b = _server("production", tcp_endpoint("::1", 5432), tcp_endpoint("127.0.0.1", 5432),
                    start=STARTED + timedelta(seconds=1), sysid=8)
        evidence = same_server_evidence(a, b)
        assert evidence == ["the same address and port loopback:5432"]

    def test_an_endpoint_alone_is_enough_even_unreached(self) -> None:
        """A subject that does not answer still shares its resolved address and port."""
        a = _server("scratch", tcp_endpoint("127.0.0.1", 5432))
        b = _server("production", tcp_endpoint("127.0.0.1", 5432), start=None, sysid=None, reached=False)
        assert same_server_evidence(a, b)

    def test_equal_system_identifier_counts_when_start_times_cannot_tell(self) -> None:
        """Same cluster lineage and nothing showing two postmasters: the same server."""
        a = _server("scratch", tcp_endpoint("10.0.0.5", 5432), start=None, sysid=42)
        b = _server("production", tcp_endpoint("10.0.0.6", 5432), start=STARTED, sysid=42)
        assert same_server_evidence(a, b) == ["the same system identifier 42"]

    def test_a_copy_running_its_own_postmaster_is_another_server(self) -> None:
        """A clone or replica (equal identifier) seen with another start time and address is not this one."""
        a = _server("scratch", tcp_endpoint("10.0.0.5", 5432), start=STARTED, sysid=42)
        later = STARTED + timedelta(hours=1)
        b = _server("production", tcp_endpoint("10.0.0.6", 5432), start=later, sysid=42)
        assert same_server_evidence(a, b) == []
        assert proven_distinct(a, b)

    def test_no_evidence_is_no_proof_unless_both_answered(self) -> None:
        """A subject known only by its DSN cannot be proven to be elsewhere."""
        a = _server("scratch", tcp_endpoint("10.0.0.5", 5432))
        b = _server("production", tcp_endpoint("10.0.0.6", 5432), start=None, sysid=None, reached=False)
        assert same_server_evidence(a, b) == []
        assert not proven_distinct(a, b)


class TestLibpqHosts:
    def test_no_host_is_the_default_socket(self) -> None:
        assert libpq_hosts({}, {}) == [HostSpec("/var/run/postgresql", DEFAULT_PORT, unix=True)]

    def test_environment_fills_what_the_string_leaves_out(self) -> None:
        """PGHOST/PGPORT apply as libpq applies them: only when the string has no value."""
        assert libpq_hosts({"dbname": "x"}, {"PGHOST": "db.internal", "PGPORT": "6432"}) == [
            HostSpec("db.internal", 6432, unix=False)]
        assert libpq_hosts({"host": "a"}, {"PGHOST": "b"}) == [HostSpec("a", DEFAULT_PORT, unix=False)]

    def test_hostaddr_is_what_is_connected_to(self) -> None:
        assert libpq_hosts({"host": "db.internal", "hostaddr": "10.0.0.5"}, {}) == [
            HostSpec("10.0.0.5", DEFAULT_PORT, unix=False)]

    def test_socket_directories_and_abstract_sockets(self) -> None:
        assert libpq_hosts({"host": "/tmp,@abstract", "port": "5433"}, {}) == [
            HostSpec("/tmp", 5433, unix=True), HostSpec("@abstract", 5433, unix=True)]

    @pytest.mark.parametrize("params", [
        {"host": "a,b,c", "port": "1,2"},
        {"host": "a,b", "hostaddr": "10.0.0.1"},
        {"host": "a", "port": "0"},
        {"host": "a", "port": "70000"},
        {"host": "a", "port": "54\u0663"},  # a Unicode digit: Python's int() takes it, libpq does not
    ])
    def test_lists_libpq_rejects_are_rejected(self, params: dict[str, str]) -> None:
        with pytest.raises(ValueError, match=r"port|host"):
            libpq_hosts(params, {})

    _HOSTS = st.lists(st.one_of(
        st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
        st.ip_addresses().map(str),
        st.from_regex(r"/[a-z]{1,8}(/[a-z]{1,8}){0,2}", fullmatch=True),
    ), min_size=1, max_size=4)

    @given(hosts=_HOSTS, data=st.data())
    def test_every_host_of_a_parsed_dsn_is_found_with_its_port(self, hosts: list[str],
                                                                data: st.DataObject) -> None:
        """Round trip through libpq's own conninfo parser: N hosts, one port or N ports."""
        ports = data.draw(st.one_of(
            st.lists(st.integers(1, 65535), min_size=len(hosts), max_size=len(hosts)),
            st.lists(st.integers(1, 65535), min_size=1, max_size=1),
        ))
        dsn = psycopg.conninfo.make_conninfo(host=",".join(hosts), port=",".join(map(str, ports)),
                                             dbname="scratch")
        params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items()}
        found = libpq_hosts(params, {"PGHOST": "elsewhere", "PGPORT": "1"})
        expected_ports = ports if len(ports) > 1 else ports * len(hosts)
        assert [(h.host, h.port, h.unix) for h in found] == [
            (h, p, h.startswith("/")) for h, p in zip(hosts, expected_ports, strict=True)]

    @given(text=st.text(max_size=40))
    def test_any_port_text_is_a_port_or_a_value_error(self, text: str) -> None:
        """Whatever the config holds, parsing never fails any other way."""
        try:
            found = libpq_hosts({"host": "db", "port": text}, {})
        except ValueError:
            return
        assert all(1 <= h.port <= 65535 for h in found)
