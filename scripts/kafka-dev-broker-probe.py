#!/usr/bin/env python3
"""Readiness probe for scripts/kafka-dev-broker, speaking the Kafka wire protocol.

Usage: kafka-dev-broker-probe.py HOST PORT [TIMEOUT_SECONDS]

Sends an ApiVersions v0 request, then a Metadata v1 request for all topics, and
checks that the broker answers both without error and advertises HOST:PORT.
Standard library only. Exit status 0 when ready; 1 with a reason on stderr.
"""

import socket
import struct
import sys

API_VERSIONS = 18
METADATA = 3
CLIENT_ID = b"kafka-dev-broker-probe"


class ProbeError(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProbeError("response truncated")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self):
        length = self.take(">h")
        if length < 0:
            return None
        if self.pos + length > len(self.data):
            raise ProbeError("response truncated")
        value = self.data[self.pos : self.pos + length].decode("utf-8", "replace")
        self.pos += length
        return value


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by broker")
        buf.extend(chunk)
    return bytes(buf)


def request(sock, api_key, api_version, correlation_id, body):
    # Request header v1: api_key, api_version, correlation_id, client_id (nullable string).
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    if size < 4 or size > 64 * 1024 * 1024:
        raise ProbeError(f"implausible response size {size}")
    reader = Reader(recv_exact(sock, size))
    got = reader.take(">i")  # response header v0: correlation_id
    if got != correlation_id:
        raise ProbeError(f"correlation id mismatch: sent {correlation_id}, got {got}")
    return reader


def api_versions(sock):
    r = request(sock, API_VERSIONS, 0, 1, b"")
    error = r.take(">h")
    if error != 0:
        raise ProbeError(f"ApiVersions v0 error code {error}")
    versions = {}
    for _ in range(r.take(">i")):
        key, lo, hi = r.take(">h"), r.take(">h"), r.take(">h")
        versions[key] = (lo, hi)
    if not versions:
        raise ProbeError("ApiVersions v0 returned no APIs")
    return versions


def metadata_brokers(sock):
    # Metadata v1 request body: topics = null (all topics).
    r = request(sock, METADATA, 1, 2, struct.pack(">i", -1))
    brokers = []
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        host = r.string()
        port = r.take(">i")
        r.string()  # rack
        brokers.append((node_id, host, port))
    return brokers


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    host, port = sys.argv[1], int(sys.argv[2])
    timeout = float(sys.argv[3]) if len(sys.argv) == 4 else 5.0
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            versions = api_versions(sock)
            if METADATA not in versions:
                raise ProbeError("broker does not list the Metadata API")
            lo, hi = versions[METADATA]
            if not lo <= 1 <= hi:
                # Readiness is proven by ApiVersions; skip the advertised-address check.
                print(f"ready (Metadata v{lo}-v{hi}, advertised address not checked)")
                return 0
            brokers = metadata_brokers(sock)
    except (OSError, ProbeError) as exc:
        print(f"probe {host}:{port}: {exc}", file=sys.stderr)
        return 1
    if not any(h == host and p == port for _, h, p in brokers):
        print(f"probe {host}:{port}: broker advertises {brokers}, not {host}:{port}", file=sys.stderr)
        return 1
    print(f"ready ({len(versions)} APIs; brokers {brokers})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
