"""A tiny raw Kafka wire client for the bad-input tests: request framing, ApiVersions parsing, and a
RecordBatch v2 encoder (with CRC-32C) for hand-made Produce requests."""
import socket
import struct
import time

API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA, API_VERSIONS = 0, 1, 2, 3, 18


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n):
    return uvarint((n << 1) ^ (n >> 63))


def read_uvarint(buf, pos):
    shift = n = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


def string(s):
    if s is None:
        return struct.pack(">h", -1)
    return struct.pack(">h", len(s)) + s


def compact_string(s):
    return uvarint(len(s) + 1) + s


def header(api_key, version, corr, client_id=b"factlog-raw", flexible=False):
    h = struct.pack(">hhi", api_key, version, corr) + string(client_id)
    if flexible:
        h += b"\x00"  # no tagged fields
    return h


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def request(api_key, version, corr, body=b"", flexible=False):
    return frame(header(api_key, version, corr, flexible=flexible) + body)


def api_versions_request(version, corr):
    if version >= 3:
        body = compact_string(b"factlog-raw") + compact_string(b"1.0") + b"\x00"
        return request(API_VERSIONS, version, corr, body, flexible=True)
    return request(API_VERSIONS, version, corr)


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_frame(s):
    """The next response frame's payload; None if the peer closed the connection."""
    hdr = recv_exact(s, 4)
    if hdr is None:
        return None
    (n,) = struct.unpack(">i", hdr)
    assert 0 <= n <= 64 * 1024 * 1024, "response frame length %d" % n
    body = recv_exact(s, n)
    assert body is not None, "connection closed inside a %d-byte response" % n
    return body


def wait_closed(s, timeout):
    """True if the peer closes (EOF or reset) within timeout, reading and discarding any bytes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            d = s.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not d:
            return True
    return False


def parse_api_versions(payload, version):
    """(correlation id, error code, {api_key: (min, max)}) from an ApiVersions response. The
    response header is always v0 (no tagged fields), even for the flexible v3 body."""
    corr, err = struct.unpack_from(">ih", payload, 0)
    pos = 6
    apis = {}
    if version >= 3:
        n, pos = read_uvarint(payload, pos)
        n -= 1
        for _ in range(max(n, 0)):
            k, lo, hi = struct.unpack_from(">hhh", payload, pos)
            pos += 6
            tags, pos = read_uvarint(payload, pos)
            for _ in range(tags):
                _, pos = read_uvarint(payload, pos)
                size, pos = read_uvarint(payload, pos)
                pos += size
            apis[k] = (lo, hi)
    else:
        (n,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        for _ in range(max(n, 0)):
            k, lo, hi = struct.unpack_from(">hhh", payload, pos)
            pos += 6
            apis[k] = (lo, hi)
    return corr, err, apis


# --- RecordBatch v2 -----------------------------------------------------------------------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def record_batch(values, base_ts):
    """An uncompressed RecordBatch v2 of keyless records, timestamps base_ts + i."""
    recs = b""
    for i, v in enumerate(values):
        body = (b"\x00" + varint(i) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0))
        recs += varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, base_ts, base_ts + len(values) - 1,
                            -1, -1, -1, len(values)) + recs
    crc = crc32c(after_crc)
    after_len = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_len)) + after_len


def produce_request(corr, topic, partition, batch, acks=1, version=3, timeout_ms=10000):
    body = (string(None) + struct.pack(">hi", acks, timeout_ms) + struct.pack(">i", 1) +
            string(topic) + struct.pack(">i", 1) + struct.pack(">i", partition) +
            struct.pack(">i", len(batch)) + batch)
    return request(API_PRODUCE, version, corr, body)


def metadata_request(corr, topics, version=1):
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)
    if version >= 4:
        body += b"\x00"  # allow_auto_topic_creation = false
    return request(API_METADATA, version, corr, body)


def fetch_request(corr, topic, partition, offset, max_wait_ms=500, min_bytes=1,
                  max_bytes=1 << 20, version=4, isolation=1):
    """Fetch v4 (no log_start_offset) for one partition."""
    assert version == 4
    body = (struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, isolation) +
            struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1) +
            struct.pack(">iqi", partition, offset, max_bytes))
    return request(API_FETCH, version, corr, body)


def parse_fetch_v4(payload):
    """(corr, error, high_watermark, last_stable_offset, records bytes or None) of the first
    partition of a Fetch v4 response."""
    corr, _throttle, nt = struct.unpack_from(">iii", payload, 0)
    pos = 12
    assert nt == 1, "Fetch response with %d topics" % nt
    (tl,) = struct.unpack_from(">h", payload, pos)
    pos += 2 + tl
    (np_,) = struct.unpack_from(">i", payload, pos)
    pos += 4
    assert np_ == 1, "Fetch response with %d partitions" % np_
    _part, err, hw, lso = struct.unpack_from(">ihqq", payload, pos)
    pos += 22
    (na,) = struct.unpack_from(">i", payload, pos)
    pos += 4 + max(na, 0) * 16
    (rl,) = struct.unpack_from(">i", payload, pos)
    pos += 4
    records = None if rl < 0 else payload[pos:pos + rl]
    return corr, err, hw, lso, records


def batches(records):
    """(base_offset, last_offset_delta, records_count) of each whole batch in a records blob."""
    out = []
    pos = 0
    while pos + 61 <= len(records):
        base, blen = struct.unpack_from(">qi", records, pos)
        if pos + 12 + blen > len(records):
            break  # a partial trailing batch is allowed
        (lod,) = struct.unpack_from(">i", records, pos + 23)
        (cnt,) = struct.unpack_from(">i", records, pos + 57)
        out.append((base, lod, cnt))
        pos += 12 + blen
    return out


def parse_metadata_v1_topics(payload):
    """{topic name: error code} from a Metadata v1..v4 response (v3+ has throttle first)."""
    return _parse_md(payload, throttle=False)


def _parse_md(payload, throttle):
    pos = 4
    if throttle:
        pos += 4
    (nb,) = struct.unpack_from(">i", payload, pos)
    pos += 4
    for _ in range(nb):
        pos += 4
        (hl,) = struct.unpack_from(">h", payload, pos)
        pos += 2 + hl + 4
        (rl,) = struct.unpack_from(">h", payload, pos)
        pos += 2 + max(rl, 0)
    if throttle:  # v2+: cluster_id
        (cl,) = struct.unpack_from(">h", payload, pos)
        pos += 2 + max(cl, 0)
    pos += 4  # controller_id
    (nt,) = struct.unpack_from(">i", payload, pos)
    pos += 4
    topics = {}
    for _ in range(nt):
        (err, nl) = struct.unpack_from(">hh", payload, pos)
        pos += 4
        name = payload[pos:pos + nl].decode()
        pos += nl + 1  # is_internal
        (np_,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        for _ in range(np_):
            pos += 2 + 4 + 4
            for _ in range(2):  # replicas, isr
                (n,) = struct.unpack_from(">i", payload, pos)
                pos += 4 + 4 * max(n, 0)
        topics[name] = err
    return topics


def parse_metadata_v4_topics(payload):
    return _parse_md(payload, throttle=True)


def parse_produce_v3(payload):
    """(corr, error, base_offset) of the first partition of a Produce v3..v7 response."""
    (corr, nt) = struct.unpack_from(">ii", payload, 0)
    pos = 8
    assert nt == 1, "Produce response with %d topics" % nt
    (tl,) = struct.unpack_from(">h", payload, pos)
    pos += 2 + tl
    (np_,) = struct.unpack_from(">i", payload, pos)
    pos += 4
    _part, err, base = struct.unpack_from(">ihq", payload, pos)
    return corr, err, base
