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


# --- consumer-group APIs (non-flexible versions only) -------------------------------------------

API_OFFSET_COMMIT, API_OFFSET_FETCH, API_FIND_COORDINATOR = 8, 9, 10
API_JOIN_GROUP, API_HEARTBEAT, API_LEAVE_GROUP, API_SYNC_GROUP = 11, 12, 13, 14
API_DESCRIBE_GROUPS, API_LIST_GROUPS, API_DELETE_GROUPS = 15, 16, 42

# Error codes the group tests look for.
NONE, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL = 0, 22, 23
UNKNOWN_MEMBER_ID, INVALID_SESSION_TIMEOUT, REBALANCE_IN_PROGRESS = 25, 26, 27
MEMBER_ID_REQUIRED = 79


def nbytes(b):
    if b is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(b)) + b


def _b(s):
    return s.encode() if isinstance(s, str) else s


class Reader:
    """Big-endian reader of a response payload (after the 4-byte correlation id)."""

    def __init__(self, payload, pos=4):
        self.buf, self.pos = payload, pos

    def _unpack(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def i8(self):
        return self._unpack(">b")

    def i16(self):
        return self._unpack(">h")

    def i32(self):
        return self._unpack(">i")

    def i64(self):
        return self._unpack(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n]
        assert len(s) == n, "string of %d bytes runs past the response end" % n
        self.pos += n
        return s.decode("utf-8", "replace")

    def bytes_(self):
        n = self.i32()
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n]
        assert len(s) == n, "bytes of %d runs past the response end" % n
        self.pos += n
        return s

    def array(self, item):
        n = self.i32()
        return [item() for _ in range(max(n, 0))]

    def done(self):
        return self.pos == len(self.buf)


def consumer_subscription(topics, user_data=None):
    """ConsumerProtocol subscription metadata (v0)."""
    return (struct.pack(">h", 0) + struct.pack(">i", len(topics)) +
            b"".join(string(_b(t)) for t in topics) + nbytes(user_data))


def consumer_assignment(parts_by_topic, user_data=None):
    """ConsumerProtocol assignment (v0): {topic: [partitions]}."""
    out = struct.pack(">h", 0) + struct.pack(">i", len(parts_by_topic))
    for t, parts in parts_by_topic.items():
        out += string(_b(t)) + struct.pack(">i", len(parts))
        out += b"".join(struct.pack(">i", p) for p in parts)
    return out + nbytes(user_data)


def parse_consumer_assignment(data):
    """{topic: [partitions]} from a ConsumerProtocol assignment."""
    if not data:
        return {}
    r = Reader(data, 0)
    r.i16()
    out = {}
    for _ in range(max(r.i32(), 0)):
        t = r.string()
        out[t] = r.array(r.i32)
    return out


def find_coordinator_request(corr, key, version=0, key_type=0):
    body = string(_b(key))
    if version >= 1:
        body += struct.pack(">b", key_type)
    return request(API_FIND_COORDINATOR, version, corr, body)


def parse_find_coordinator(payload, version):
    """{corr, error, node_id, host, port}."""
    r = Reader(payload)
    out = {"corr": struct.unpack_from(">i", payload, 0)[0]}
    if version >= 1:
        r.i32()
    out["error"] = r.i16()
    if version >= 1:
        out["error_message"] = r.string()
    out["node_id"], out["host"], out["port"] = r.i32(), r.string(), r.i32()
    return out


def join_group_request(corr, group, member_id=b"", protocols=((b"range", b""),), version=2,
                       session_ms=30000, rebalance_ms=None, protocol_type=b"consumer",
                       instance_id=None):
    body = string(_b(group)) + struct.pack(">i", session_ms)
    if version >= 1:
        body += struct.pack(">i", session_ms if rebalance_ms is None else rebalance_ms)
    body += string(_b(member_id))
    if version >= 5:
        body += string(None if instance_id is None else _b(instance_id))
    body += string(_b(protocol_type)) + struct.pack(">i", len(protocols))
    for name, meta in protocols:
        body += string(_b(name)) + nbytes(meta)
    return request(API_JOIN_GROUP, version, corr, body)


def parse_join_group(payload, version):
    """{corr, error, generation, protocol, leader, member_id, members: [(id, instance, meta)]}."""
    r = Reader(payload)
    out = {"corr": struct.unpack_from(">i", payload, 0)[0]}
    if version >= 2:
        r.i32()
    out["error"], out["generation"] = r.i16(), r.i32()
    out["protocol"], out["leader"], out["member_id"] = r.string(), r.string(), r.string()

    def member():
        mid = r.string()
        inst = r.string() if version >= 5 else None
        return (mid, inst, r.bytes_())
    out["members"] = r.array(member)
    assert r.done(), "JoinGroup v%d response has %d trailing bytes" % (version,
                                                                      len(payload) - r.pos)
    return out


def sync_group_request(corr, group, generation, member_id, assignments=(), version=1,
                       instance_id=None):
    """assignments: [(member_id, assignment bytes)] (the leader's; empty for followers)."""
    body = string(_b(group)) + struct.pack(">i", generation) + string(_b(member_id))
    if version >= 3:
        body += string(None if instance_id is None else _b(instance_id))
    body += struct.pack(">i", len(assignments))
    for mid, a in assignments:
        body += string(_b(mid)) + nbytes(a)
    return request(API_SYNC_GROUP, version, corr, body)


def parse_sync_group(payload, version):
    """{corr, error, assignment bytes}."""
    r = Reader(payload)
    out = {"corr": struct.unpack_from(">i", payload, 0)[0]}
    if version >= 1:
        r.i32()
    out["error"], out["assignment"] = r.i16(), r.bytes_()
    assert r.done(), "SyncGroup v%d response has trailing bytes" % version
    return out


def heartbeat_request(corr, group, generation, member_id, version=1, instance_id=None):
    body = string(_b(group)) + struct.pack(">i", generation) + string(_b(member_id))
    if version >= 3:
        body += string(None if instance_id is None else _b(instance_id))
    return request(API_HEARTBEAT, version, corr, body)


def leave_group_request(corr, group, member_id, version=1):
    return request(API_LEAVE_GROUP, version, corr, string(_b(group)) + string(_b(member_id)))


def parse_error_only(payload, version, throttle_from=1):
    """{corr, error} of Heartbeat / LeaveGroup (throttle_time_ms first from throttle_from on)."""
    r = Reader(payload)
    out = {"corr": struct.unpack_from(">i", payload, 0)[0]}
    if version >= throttle_from:
        r.i32()
    out["error"] = r.i16()
    return out


def offset_commit_request(corr, group, offsets, generation=-1, member_id=b"", version=2):
    """offsets: {topic: [(partition, offset, metadata or None)]}."""
    body = string(_b(group)) + struct.pack(">i", generation) + string(_b(member_id))
    if 2 <= version <= 4:
        body += struct.pack(">q", -1)  # retention_time_ms: the broker's default
    body += struct.pack(">i", len(offsets))
    for t, parts in offsets.items():
        body += string(_b(t)) + struct.pack(">i", len(parts))
        for p, off, md in parts:
            body += struct.pack(">iq", p, off) + string(None if md is None else _b(md))
    return request(API_OFFSET_COMMIT, version, corr, body)


def parse_offset_commit(payload, version):
    """{corr, errors: {(topic, partition): error}}."""
    r = Reader(payload)
    out = {"corr": struct.unpack_from(">i", payload, 0)[0], "errors": {}}
    if version >= 3:
        r.i32()
    for _ in range(max(r.i32(), 0)):
        t = r.string()
        for _ in range(max(r.i32(), 0)):
            p = r.i32()
            out["errors"][(t, p)] = r.i16()
    assert r.done(), "OffsetCommit v%d response has trailing bytes" % version
    return out


def offset_fetch_request(corr, group, topics, version=1):
    """topics: {topic: [partitions]}, or None for all (v2+)."""
    body = string(_b(group))
    if topics is None:
        body += struct.pack(">i", -1)
    else:
        body += struct.pack(">i", len(topics))
        for t, parts in topics.items():
            body += string(_b(t)) + struct.pack(">i", len(parts))
            body += b"".join(struct.pack(">i", p) for p in parts)
    return request(API_OFFSET_FETCH, version, corr, body)


def parse_offset_fetch(payload, version):
    """{corr, error, offsets: {(topic, partition): (offset, metadata, error)}}."""
    r = Reader(payload)
    out = {"corr": struct.unpack_from(">i", payload, 0)[0], "offsets": {}, "error": 0}
    if version >= 3:
        r.i32()
    for _ in range(max(r.i32(), 0)):
        t = r.string()
        for _ in range(max(r.i32(), 0)):
            p = r.i32()
            off = r.i64()
            md = r.string()
            out["offsets"][(t, p)] = (off, md, r.i16())
    if version >= 2:
        out["error"] = r.i16()
    assert r.done(), "OffsetFetch v%d response has trailing bytes" % version
    return out


def list_groups_request(corr, version=0):
    return request(API_LIST_GROUPS, version, corr)


def parse_list_groups(payload, version):
    """{corr, error, groups: {group: protocol_type}}."""
    r = Reader(payload)
    out = {"corr": struct.unpack_from(">i", payload, 0)[0]}
    if version >= 1:
        r.i32()
    out["error"] = r.i16()
    out["groups"] = dict(r.array(lambda: (r.string(), r.string())))
    return out


def describe_groups_request(corr, groups, version=0):
    body = struct.pack(">i", len(groups)) + b"".join(string(_b(g)) for g in groups)
    return request(API_DESCRIBE_GROUPS, version, corr, body)


def parse_describe_groups(payload, version):
    """{corr, groups: [{error, group, state, protocol_type, protocol, members: [...]}]}."""
    r = Reader(payload)
    out = {"corr": struct.unpack_from(">i", payload, 0)[0]}
    if version >= 1:
        r.i32()

    def member():
        return {"member_id": r.string(), "client_id": r.string(), "client_host": r.string(),
                "metadata": r.bytes_(), "assignment": r.bytes_()}

    def group():
        return {"error": r.i16(), "group": r.string(), "state": r.string(),
                "protocol_type": r.string(), "protocol": r.string(), "members": r.array(member)}
    out["groups"] = r.array(group)
    return out


def delete_groups_request(corr, groups, version=0):
    body = struct.pack(">i", len(groups)) + b"".join(string(_b(g)) for g in groups)
    return request(API_DELETE_GROUPS, version, corr, body)


def parse_delete_groups(payload, version):
    """{corr, errors: {group: error}}."""
    r = Reader(payload)
    out = {"corr": struct.unpack_from(">i", payload, 0)[0]}
    r.i32()  # throttle_time_ms (every version)
    out["errors"] = dict(r.array(lambda: (r.string(), r.i16())))
    assert r.done(), "DeleteGroups v%d response has trailing bytes" % version
    return out


class GroupConn:
    """One raw connection for group requests: call(kind, ...) sends one request and parses the
    answer; correlation ids count up and are checked."""

    ENC = {"join": (join_group_request, parse_join_group),
           "sync": (sync_group_request, parse_sync_group),
           "heartbeat": (heartbeat_request, parse_error_only),
           "leave": (leave_group_request, parse_error_only),
           "commit": (offset_commit_request, parse_offset_commit),
           "fetch": (offset_fetch_request, parse_offset_fetch),
           "find": (find_coordinator_request, parse_find_coordinator),
           "list": (list_groups_request, parse_list_groups),
           "describe": (describe_groups_request, parse_describe_groups),
           "delete": (delete_groups_request, parse_delete_groups)}

    def __init__(self, port, timeout=10.0):
        self.sock = connect(port, timeout)
        self.corr = 1000

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, kind, *args, version, **kw):
        enc, _ = self.ENC[kind]
        self.corr += 1
        self.sock.sendall(enc(self.corr, *args, version=version, **kw))
        return self.corr

    def recv(self, kind, corr, version):
        _, dec = self.ENC[kind]
        payload = recv_frame(self.sock)
        assert payload is not None, "broker closed the connection instead of answering %s v%d" % (
            kind, version)
        out = dec(payload, version)
        assert out["corr"] == corr, "%s v%d: correlation id %d, want %d" % (kind, version,
                                                                            out["corr"], corr)
        return out

    def call(self, kind, *args, version, **kw):
        corr = self.send(kind, *args, version=version, **kw)
        return self.recv(kind, corr, version)
