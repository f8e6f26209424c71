"""The wire protocol from a raw socket: ApiVersions, pipelining, acks=0, and bad input.

After every bad input the broker must still be running and serve a fresh connection, both raw and
through a real client.
"""
import os
import socket
import struct
import time

import klib
import kwire

# The versions the broker promises (its command-line contract): every range must be advertised.
CONTRACT = {
    18: ("ApiVersions", 0, 3),
    3: ("Metadata", 0, 4),
    0: ("Produce", 3, 7),
    1: ("Fetch", 4, 11),
    2: ("ListOffsets", 1, 3),
    19: ("CreateTopics", 0, 4),
    20: ("DeleteTopics", 0, 1),
    37: ("CreatePartitions", 0, 1),
    22: ("InitProducerId", 0, 1),
}
CONFIGS_APIS = {32: "DescribeConfigs", 33: "AlterConfigs"}


def api_versions(port, version=0, corr=7):
    with kwire.connect(port) as s:
        s.sendall(kwire.api_versions_request(version, corr))
        payload = kwire.recv_frame(s)
    assert payload is not None, "broker closed the connection instead of answering ApiVersions v%d" % (
        version)
    c, err, apis = kwire.parse_api_versions(payload, version)
    assert c == corr, "ApiVersions v%d: correlation id %d, want %d" % (version, c, corr)
    assert err == 0, "ApiVersions v%d: error %d" % (version, err)
    return apis


def assert_healthy(broker):
    """The process is up, a fresh raw connection is served, and librdkafka sees the broker."""
    broker.assert_alive()
    apis = api_versions(broker.port)
    assert 18 in apis
    md = klib.ck_admin(broker.bootstrap).list_topics(timeout=10)
    assert [b.id for b in md.brokers.values()] == [0]
    broker.assert_alive()


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def check_contract(apis, version):
    problems = []
    for key, (name, lo, hi) in CONTRACT.items():
        if key not in apis:
            problems.append("%s (%d) missing" % (name, key))
            continue
        alo, ahi = apis[key]
        if alo > lo or ahi < hi:
            problems.append("%s (%d) advertised %d-%d, contract %d-%d" % (name, key, alo, ahi, lo,
                                                                           hi))
    for key, name in CONFIGS_APIS.items():
        if key not in apis:
            problems.append("%s (%d) missing" % (name, key))
    for key, (lo, hi) in apis.items():
        if lo > hi or lo < 0:
            problems.append("api %d has range %d-%d" % (key, lo, hi))
    assert not problems, "ApiVersions v%d: %s" % (version, "; ".join(problems))


def test_api_versions_all_versions(broker):
    for v in (0, 1, 2, 3):
        check_contract(api_versions(broker.port, v, corr=100 + v), v)


def test_api_versions_unsupported_version(broker):
    """A too-new ApiVersions gets UNSUPPORTED_VERSION (35) with the v0-format api list, and the
    connection stays usable (librdkafka retries on it with a version from that list)."""
    with kwire.connect(broker.port) as s:
        s.sendall(kwire.api_versions_request(9, corr=4242))
        payload = kwire.recv_frame(s)
        assert payload is not None, "broker closed the connection on ApiVersions v9"
        corr, err, apis = kwire.parse_api_versions(payload, 0)
        assert corr == 4242, "correlation id %d, want 4242" % corr
        assert err == 35, "ApiVersions v9: error %d, want 35 (UNSUPPORTED_VERSION)" % err
        assert 18 in apis and apis[18][1] >= 3, "api list with the error: %r" % apis
        check_contract(apis, 0)
        s.sendall(kwire.api_versions_request(3, corr=4243))
        payload = kwire.recv_frame(s)
        assert payload is not None, "connection closed after the UNSUPPORTED_VERSION answer"
        corr, err, _ = kwire.parse_api_versions(payload, 3)
        assert (corr, err) == (4243, 0)
    assert_healthy(broker)


def test_pipelined_requests_answered_in_order(broker):
    reqs = (kwire.api_versions_request(0, 1) + kwire.metadata_request(2, None, version=1) +
            kwire.api_versions_request(3, 3) + kwire.metadata_request(4, [], version=4) +
            kwire.api_versions_request(2, 5))
    with kwire.connect(broker.port) as s:
        s.sendall(reqs)
        corrs = []
        for _ in range(5):
            p = kwire.recv_frame(s)
            assert p is not None, "connection closed after %d of 5 pipelined answers" % len(corrs)
            corrs.append(struct.unpack_from(">i", p)[0])
    assert corrs == [1, 2, 3, 4, 5], "pipelined answers came with correlation ids %r" % corrs


def test_produce_acks0_gets_no_response(broker):
    """acks=0 must not be answered: the next answer on the connection belongs to the next request."""
    klib.ck_create_topic(broker.bootstrap, "wire-acks0", 1)
    ts = klib.now_ms()
    with kwire.connect(broker.port) as s:
        batch = kwire.record_batch([b"zero-%d" % i for i in range(5)], ts)
        s.sendall(kwire.produce_request(11, b"wire-acks0", 0, batch, acks=0))
        batch = kwire.record_batch([b"one-%d" % i for i in range(3)], ts + 10)
        s.sendall(kwire.produce_request(12, b"wire-acks0", 0, batch, acks=1))
        p = kwire.recv_frame(s)
        assert p is not None, "connection closed after Produce"
        corr = struct.unpack_from(">i", p)[0]
        assert corr == 12, "first answer has correlation id %d: the acks=0 Produce (11) " \
            "was answered" % corr
        # v3 response: [topic [partition error base_offset log_append_time]] throttle
        pos = 4
        (nt,) = struct.unpack_from(">i", p, pos)
        pos += 4
        (tl,) = struct.unpack_from(">h", p, pos)
        pos += 2 + tl
        (np_,) = struct.unpack_from(">i", p, pos)
        pos += 4
        part, err, base = struct.unpack_from(">ihq", p, pos)
        assert (nt, np_, part, err, base) == (1, 1, 0, 0, 5), \
            "Produce answer: topics=%d partitions=%d partition=%d error=%d base_offset=%d, " \
            "want 1 1 0 0 5" % (nt, np_, part, err, base)
    got = klib.ck_consume(broker.bootstrap, "wire-acks0", 8)
    vals = [g.value for g in sorted(got, key=lambda g: g.offset)]
    assert vals == [b"zero-%d" % i for i in range(5)] + [b"one-%d" % i for i in range(3)], vals
    assert [g.ts for g in sorted(got, key=lambda g: g.offset)] == \
        [ts + i for i in range(5)] + [ts + 10 + i for i in range(3)]


def test_produce_bad_crc_rejected(broker):
    """A batch whose CRC-32C does not match is refused (CORRUPT_MESSAGE, 2) and not stored."""
    klib.ck_create_topic(broker.bootstrap, "wire-crc", 1)
    batch = bytearray(kwire.record_batch([b"good"], klib.now_ms()))
    batch[-3] ^= 0x55  # flip bits inside the record value
    with kwire.connect(broker.port) as s:
        s.sendall(kwire.produce_request(21, b"wire-crc", 0, bytes(batch), acks=1))
        p = kwire.recv_frame(s)
    if p is not None:  # an answer must carry an error; closing the connection is also acceptable
        pos = 8
        (tl,) = struct.unpack_from(">h", p, pos)
        pos += 2 + tl + 4
        part, err = struct.unpack_from(">ih", p, pos)
        assert err != 0, "a batch with a bad CRC was accepted"
        assert err == 2, "bad CRC: error %d, want 2 (CORRUPT_MESSAGE)" % err
    got = klib.ck_consume(broker.bootstrap, "wire-crc", 0, timeout=10)
    assert got == [], "corrupt batch was stored: %r" % got
    assert_healthy(broker)


def _expect_closed(broker, data, what, timeout=5):
    with kwire.connect(broker.port) as s:
        s.sendall(data)
        assert kwire.wait_closed(s, timeout), \
            "%s: the connection was still open after %ss (Kafka closes it)" % (what, timeout)
    assert_healthy(broker)


def test_frame_length_too_large(broker):
    rss0 = rss_mb(broker.proc.pid)
    _expect_closed(broker, struct.pack(">i", 2 ** 31 - 1) + b"\x00\x12\x00\x00" * 256,
                   "frame length 2^31-1")
    rss1 = rss_mb(broker.proc.pid)
    assert rss1 < rss0 + 256, "RSS grew from %d MB to %d MB after a 2 GiB frame header" % (rss0,
                                                                                          rss1)


def test_frame_length_negative(broker):
    _expect_closed(broker, struct.pack(">i", -1) + b"\x00" * 16, "frame length -1")
    _expect_closed(broker, struct.pack(">i", -2 ** 31) + b"\x00" * 16, "frame length -2^31")


def test_frame_too_short_for_header(broker):
    _expect_closed(broker, struct.pack(">i", 0), "frame length 0")
    _expect_closed(broker, struct.pack(">i", 3) + b"\x00\x12\x00", "3-byte frame")


def test_unknown_api_key(broker):
    """Kafka closes the connection; an answer carrying our correlation id is tolerable. Silence
    (neither) leaves the client hanging and fails."""
    for key in (999, 32767, -5):
        with kwire.connect(broker.port) as s:
            s.sendall(kwire.request(key, 0, 777, b"\x00" * 8))
            s.settimeout(5)
            try:
                p = kwire.recv_frame(s)
            except socket.timeout:
                raise AssertionError("api key %d: no answer and no close within 5 s" % key)
            except ConnectionResetError:
                p = None
            if p is not None:
                corr = struct.unpack_from(">i", p)[0]
                assert corr == 777, "api key %d: answer with correlation id %d" % (key, corr)
        assert_healthy(broker)


def test_unsupported_version_of_known_api(broker):
    """Metadata v99: closed or answered with our correlation id, never silence or a crash."""
    with kwire.connect(broker.port) as s:
        s.sendall(kwire.request(kwire.API_METADATA, 99, 888, struct.pack(">i", -1)))
        try:
            p = kwire.recv_frame(s)
        except socket.timeout:
            raise AssertionError("Metadata v99: no answer and no close within 5 s")
        except ConnectionResetError:
            p = None
        if p is not None:
            assert struct.unpack_from(">i", p)[0] == 888
    assert_healthy(broker)


def test_truncated_frames_then_close(broker):
    # A header promising 100 bytes, 20 sent, then close; and a frame cut inside the length field.
    for data in (struct.pack(">i", 100) + b"\x00\x12\x00\x00" + b"\x00" * 16,
                 b"\x00\x00",
                 kwire.api_versions_request(3, 5)[:-3],
                 kwire.metadata_request(6, [b"a" * 50], version=4)[:30]):
        with kwire.connect(broker.port) as s:
            s.sendall(data)
        time.sleep(0.05)
    assert_healthy(broker)


def test_garbage_bodies(broker):
    """Valid frames whose bodies are garbage or cut short for each contract api."""
    rnd = os.urandom(512)
    for key in list(CONTRACT) + list(CONFIGS_APIS):
        _, lo, hi = CONTRACT.get(key, ("", 0, 0))
        for body in (b"", b"\xff" * 7, rnd[: 64 + key], struct.pack(">i", 2 ** 31 - 1) * 4):
            with kwire.connect(broker.port, timeout=3) as s:
                s.sendall(kwire.request(key, hi, 99, body))
                try:
                    p = kwire.recv_frame(s)
                except ConnectionResetError:
                    p = None
                except socket.timeout:
                    # Silence is only right for a Produce that parsed as acks=0.
                    assert key == kwire.API_PRODUCE, \
                        "api %d v%d, body %r...: no answer and no close within 3 s" % (
                            key, hi, body[:16])
                    p = None
                if p is not None:
                    assert struct.unpack_from(">i", p)[0] == 99, \
                        "api %d v%d garbage body: answer with a wrong correlation id" % (key, hi)
            broker.assert_alive()
    assert_healthy(broker)


def test_many_short_connections(broker):
    deadline = time.monotonic() + 20
    for i in range(300):
        assert time.monotonic() < deadline, "300 connections took more than 20 s"
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
        if i % 3 == 0:
            s.sendall(kwire.api_versions_request(0, i))
        s.close()
    assert_healthy(broker)
