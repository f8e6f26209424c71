"""Hostile clients: slowloris, idle-connection floods past the limit, connection storms, absurd counts
and endless tagged fields. Connections are closed or limited, memory stays bounded, and a well-behaved
client is served throughout."""
import resource
import socket
import struct
import time

from confluent_kafka.admin import AdminClient

from broker import Broker

class Server(Broker):
    def healthy(self):
        """A real client gets metadata."""
        assert self.proc.poll() is None, "the server died:\n" + self.log_tail()
        md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=10)
        assert 0 in md.brokers, md.brokers


def closed_by_server(sock, timeout=3.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def test_slowloris_is_cut_off_and_others_are_served():
    s = Server("--request-timeout-ms", "1000")
    try:
        slow = socket.create_connection(("127.0.0.1", s.port))
        slow.sendall(struct.pack(">i", 100))  # promises 100 bytes...
        start = time.time()
        cut = False
        while time.time() - start < 6:
            try:
                slow.sendall(b"x")  # ...and sends one byte at a time
            except OSError:
                cut = True
                break
            s.healthy()
            slow.settimeout(0.3)
            try:
                if slow.recv(1) == b"":
                    cut = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                cut = True
                break
        assert cut, "a request trickling in byte by byte was never cut off"
        assert time.time() - start < 4, "cut off only after %.1f s (timeout 1 s)" % (time.time() - start)
        assert "request incomplete for too long" in s.log_tail(100000)
        s.healthy()
    finally:
        s.remove()


def test_connections_past_the_limit_evict_the_longest_idle():
    raise_nofile()
    s = Server("--max-connections", "300")
    socks = []
    try:
        for _ in range(400):
            socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
            time.sleep(0.001)
        time.sleep(0.5)
        closed = [i for i, c in enumerate(socks) if closed_by_server(c, 0.05)]
        assert len(closed) >= 90, "only %d connections were closed with 400 open and a limit of 300" % len(closed)
        assert max(closed) < 300, "a recent connection was closed before older idle ones: %r" % closed[-5:]
        assert not any(closed_by_server(c, 0.05) for c in socks[-50:]), "the newest connections were closed"
        assert s.rss_mb() < 300, "RSS %.0f MB with 300 idle connections" % s.rss_mb()
        s.healthy()  # a new client at the limit gets in: an idle connection makes room
        assert "the longest idle connection makes room" in s.log_tail(100000)
    finally:
        for c in socks:
            c.close()
        s.remove()


def test_ten_thousand_idle_connections():
    raise_nofile()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = min(10000, soft - 200)
    assert n >= 2000, "this machine allows only %d descriptors per process" % soft
    if n < 10000:
        print("descriptor limit %d: testing %d idle connections instead of 10,000" % (soft, n))
    s = Server()
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
        s.healthy()
        rss = s.rss_mb()
        assert rss < 400, "RSS %.0f MB with %d idle connections" % (rss, n)
    finally:
        for c in socks:
            c.close()
        s.remove()


def test_connection_storm():
    s = Server()
    try:
        deadline = time.time() + 20
        n = 0
        while n < 3000 and time.time() < deadline:
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            if n % 3 == 0:
                c.sendall(struct.pack(">ihhi", 10, 18, 0, n) + struct.pack(">h", -1))  # ApiVersions v0
            c.close()
            n += 1
        assert n == 3000, "only %d connections in 20 s" % n
        s.healthy()
    finally:
        s.remove()


def test_absurd_counts_and_endless_tags():
    s = Server()
    try:
        # Metadata v1 claiming 10^9 topics in a 20-byte body.
        body = struct.pack(">hhih", 3, 1, 7, -1) + struct.pack(">i", 1000000000) + b"\x00" * 8
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(struct.pack(">i", len(body)) + body)
        assert closed_by_server(c), "a count of 10^9 was not refused"
        # ApiVersions v3 with a header tag section claiming 2^32 tagged fields.
        body = struct.pack(">hhih", 18, 3, 8, -1) + b"\xff\xff\xff\xff\x0f" + b"\x00" * 10
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(struct.pack(">i", len(body)) + body)
        c.settimeout(3)
        try:
            data = c.recv(4096)
        except (ConnectionResetError, socket.timeout):
            data = b""
        assert data == b"" or len(data) < 4096, "unexpected answer to endless tagged fields"
        # A frame header of 2^31 - 1 bytes.
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(struct.pack(">i", 2 ** 31 - 1) + b"\x00" * 16)
        assert closed_by_server(c), "a 2 GiB frame was not refused"
        assert s.rss_mb() < 200, "RSS %.0f MB after hostile frames" % s.rss_mb()
        s.healthy()
    finally:
        s.remove()
