"""Consumer groups with every client (kcat -G, a C program on librdkafka, confluent-kafka, kafka-python,
kafkajs), and the
group APIs from a raw socket.

Per client: three members split a six-partition topic and read every record exactly once; a member
killed with SIGKILL loses its partitions to the others once its session times out, and nothing is
lost; offsets committed at a known point survive a broker restart and the group resumes from them.
Then, with confluent-kafka / kafka-python: fifty groups read one topic at once; OffsetCommit
metadata round trips; `factlog groups list|describe` shows members and the right lag. Last, bad
group requests (unknown member, stale generation, bad session timeout, inconsistent protocols,
KIP-394 member ids, simple commits) get the right error codes and leave a healthy group alone; the
rebalance state machine (leader/follower, a JoinGroup parked on a dead connection, session expiry,
leaving) and DeleteGroups, also from raw sockets.

Members run as separate processes (klib.GroupMember) so a test can SIGKILL one by PID; every wait
is bounded.
"""
import os
import socket
import struct
import threading
import time

import pytest

import klib
import kwire

P = 6
SESSION_MS = 6000
HEARTBEAT_MS = 1000
CLIENTS = ["kcat", "rdk", "ck", "kp", "kjs"]
CLIENT_NAMES = {"kcat": "kcat", "rdk": "librdkafka-c", "ck": "confluent-kafka", "kp": "kafka-python",
                "kjs": "kafkajs"}


def members(client, n, broker, group, topic, workdir, **spec):
    base = dict(bootstrap=broker.bootstrap, group=group, topic=topic, session_ms=SESSION_MS,
                heartbeat_ms=HEARTBEAT_MS, duration_s=120)
    base.update(spec)
    return klib.GroupMembers(klib.GroupMember("%s-%s-%d" % (client, group, i), client, base,
                                              str(workdir)) for i in range(n))


def history(ms):
    """Each member's assignment history (relative times), for failure messages."""
    lines = []
    for m in ms:
        ev = [(e["ev"], e.get("parts"), e["t"]) for e in m.events()
              if e["ev"] in ("assign", "revoke")]
        t0 = ev[0][2] if ev else 0
        lines.append("  %s (pid %d): %s" % (m.name, m.pid, ", ".join(
            "%s %s @%+dms" % (k, p, t - t0) for k, p, t in ev) or "no assignment"))
    return "\n".join(lines)


def wait_consumed(ms, n, timeout, idle_s=1.5):
    """Waits until the members together reported n records, and then none for idle_s."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        total = sum(m.count() for m in ms)
        if total != last:
            last, since = total, time.monotonic()
        if total >= n and time.monotonic() - since >= idle_s:
            return total
        dead = [m for m in ms if not m.alive()]
        if dead:
            raise AssertionError("%s exited early (status %s) after %d of %d records\n%s\n%s" % (
                dead[0].name, dead[0].proc.returncode, total, n, history(ms), dead[0].log_tail()))
        if time.monotonic() > deadline:
            raise AssertionError("members read %d of %d records in %ss\n%s\n%s" % (
                total, n, timeout, history(ms), ms[0].log_tail()))
        time.sleep(0.1)


def stop_all(ms, timeout=30):
    for m in ms:
        m.request_stop()
    for m in ms:
        m.assert_clean_exit(m.wait(timeout, "leave the group and exit"))


# ---------------------------------------------------------------------------------------------------
# 1. Three members, six partitions: each partition has one owner, each record is read once.


@pytest.mark.parametrize("client", CLIENTS, ids=[CLIENT_NAMES[c] for c in CLIENTS])
def test_groups_three_members_split_partitions(broker, tmp_path, client):
    topic, group = "grp-split-" + client, "split-" + client
    klib.ck_create_topic(broker.bootstrap, topic, P)
    recs = klib.make_records(6000, nkeys=600, headers=False)
    klib.ck_produce_ok(broker.bootstrap, topic, recs)
    with members(client, 3, broker, group, topic, tmp_path) as ms:
        klib.start_members(ms)
        wait_consumed(ms, len(recs), timeout=60)
        got = {m: m.records() for m in ms}
        owned = {m: m.current() for m in ms}
        hist = history(ms)
        stop_all(ms)
    ctx = "\nassignments:\n" + hist
    # Every partition is owned by exactly one member; three members share six partitions 2/2/2.
    all_owned = [p for m in ms for p in owned[m]]
    assert sorted(all_owned) == list(range(P)), "final assignments %r%s" % (
        {m.name: owned[m] for m in ms}, ctx)
    assert sorted(len(owned[m]) for m in ms) == [2, 2, 2], "uneven split %r%s" % (
        {m.name: owned[m] for m in ms}, ctx)
    # Each member read only its own partitions, in offset order.
    for m in ms:
        stray = sorted({g.partition for g in got[m]} - set(owned[m]))
        assert not stray, "%s read partitions %s it does not own (owns %s)%s" % (
            m.name, stray, owned[m], ctx)
        last = {}
        for g in got[m]:
            assert g.offset > last.get(g.partition, -1), \
                "%s: partition %d offset %d after %d%s" % (m.name, g.partition, g.offset,
                                                           last[g.partition], ctx)
            last[g.partition] = g.offset
    # All records together: each exactly once, right key and value, per-key order, dense offsets.
    try:
        klib.verify([g for m in ms for g in got[m]], recs, check_headers=False, ts_exact=False,
                    partitions=set(range(P)))
    except AssertionError as e:
        raise AssertionError("%s%s" % (e, ctx)) from None


# ---------------------------------------------------------------------------------------------------
# 2. SIGKILL one member: after its session times out the others own its partitions, and every
#    record (in particular every record produced after the kill) is consumed.


@pytest.mark.parametrize("client", CLIENTS, ids=[CLIENT_NAMES[c] for c in CLIENTS])
def test_groups_killed_member_partitions_taken_over(broker, tmp_path, client):
    topic, group = "grp-kill-" + client, "kill-" + client
    klib.ck_create_topic(broker.bootstrap, topic, P)
    recs = klib.make_records(6000, nkeys=600, headers=False)
    before, after = recs[:3000], recs[3000:]
    klib.ck_produce_ok(broker.bootstrap, topic, before)
    with members(client, 3, broker, group, topic, tmp_path, commit="each") as ms:
        klib.start_members(ms)
        klib.wait_until(lambda: sorted(p for m in ms for p in m.current()) == list(range(P)),
                        30, lambda: "a stable 3-member assignment\n" + history(ms))
        wait_consumed(ms, len(before), timeout=60)
        victim, survivors = ms[0], ms[1:]
        victim_parts = victim.current()
        assert victim_parts, "victim %s owns nothing\n%s" % (victim.name, history(ms))
        t_kill = klib.now_ms()
        victim.kill9()
        klib.ck_produce_ok(broker.bootstrap, topic, after)

        def taken_over():
            return sorted(p for m in survivors for p in m.current()) == list(range(P))
        klib.wait_until(taken_over, SESSION_MS / 1000 + 25, lambda: (
            "the survivors to own all %d partitions (victim %s had %s)\n%s"
            % (P, victim.name, victim_parts, history(ms))))
        # When did the victim's partitions get a new owner?
        took = {}
        for m in survivors:
            for t, parts in m.assignments():
                for p in parts:
                    if t >= t_kill and p in victim_parts and p not in took:
                        took[p] = t
        takeover_ms = max(took.values()) - t_kill
        want = {r.i for r in after}

        def survivors_have_all():
            seen = {klib.index_of_value(g.value) for m in survivors for g in m.records()}
            return want <= seen
        klib.wait_until(survivors_have_all, 60, lambda: "the survivors to read the %d records "
                        "produced after the kill\n%s" % (len(after), history(ms)))
        wait_consumed(survivors, 0, timeout=30, idle_s=1.0)
        got_victim = victim.records()
        got_surv = [g for m in survivors for g in m.records()]
        hist = history(ms)
        stop_all(survivors)
    ctx = "\nvictim %s owned %s; assignments:\n%s" % (victim.name, victim_parts, hist)
    print("%s: victim's partitions %s taken over %d ms after the kill" % (
        client, victim_parts, takeover_ms))
    # Taken over once the session expired (plus a heartbeat interval and the rebalance itself).
    limit = SESSION_MS + 5000
    assert takeover_ms <= limit, "the victim's partitions were reassigned %d ms after the kill " \
        "(session timeout %d ms, limit %d ms)%s" % (takeover_ms, SESSION_MS, limit, ctx)
    # Nothing lost: every record was read by someone; everything after the kill by the survivors.
    try:
        klib.check_records_at_least_once(got_victim + got_surv, recs)
    except AssertionError as e:
        raise AssertionError("%s%s" % (e, ctx)) from None
    seen_surv = {klib.index_of_value(g.value) for g in got_surv}
    missing = sorted(want - seen_surv)
    assert not missing, "%d records produced after the kill not read by the survivors, e.g. %s%s" \
        % (len(missing), missing[:10], ctx)
    # The survivors resumed the victim's partitions where it stopped (its commits), not later.
    for p in victim_parts:
        vmax = max((g.offset for g in got_victim if g.partition == p), default=-1)
        smin = min((g.offset for g in got_surv if g.partition == p), default=None)
        assert smin is not None and smin <= vmax + 1, \
            "partition %d: victim read up to offset %d, survivors started at %s%s" % (
                p, vmax, smin, ctx)


# ---------------------------------------------------------------------------------------------------
# 3. Commit at a known point, restart the broker, resume from the committed offsets.


@pytest.mark.parametrize("client", CLIENTS, ids=[CLIENT_NAMES[c] for c in CLIENTS])
def test_groups_commit_restart_resume(broker, tmp_path, client):
    topic, group = "grp-resume-" + client, "resume-" + client
    n_first, n_commit = 4000, 1500
    klib.ck_create_topic(broker.bootstrap, topic, P)
    recs = klib.make_records(5000, nkeys=500, headers=False)
    klib.ck_produce_ok(broker.bootstrap, topic, recs[:n_first])
    os.makedirs(str(tmp_path / "a"))
    os.makedirs(str(tmp_path / "b"))
    with members(client, 1, broker, group, topic, tmp_path / "a", commit="at",
                 commit_at=n_commit) as ms:
        klib.start_members(ms)
        ms[0].assert_clean_exit(ms[0].wait(60, "read %d records, commit and exit" % n_commit))
    got1 = ms[0].records()
    assert len(got1) == n_commit, "%s read %d records before committing, want %d\n%s" % (
        ms[0].name, len(got1), n_commit, ms[0].log_tail())
    known = {}
    for g in got1:
        known[g.partition] = max(known.get(g.partition, 0), g.offset + 1)
    if client != "kcat":
        ev = [e for e in ms[0].events() if e["ev"] == "commit"]
        assert ev and {int(p): o for p, o in ev[-1]["offsets"].items()} == known, \
            "member committed %r, want %r" % (ev, known)

    def check_committed(when):
        c = klib.committed_offsets(broker.port, group, topic, range(P))
        have = {p: off for p, (off, _md) in c.items() if off >= 0}
        assert have == known and all(c[p][0] == -1 for p in range(P) if p not in known), \
            "%s: committed offsets %r, want %r (the %d records read)" % (
                when, {p: c[p][0] for p in sorted(c)}, known, n_commit)
    check_committed("before the restart")
    broker.restart()
    check_committed("after the restart")
    klib.ck_produce_ok(broker.bootstrap, topic, recs[n_first:])

    left = len(recs) - n_commit
    with members(client, 1, broker, group, topic, tmp_path / "b", expect=left, idle_s=1.5,
                 exit_at_end=True) as ms2:
        klib.start_members(ms2)
        ms2[0].assert_clean_exit(ms2[0].wait(60, "read the %d remaining records" % left))
    got2 = ms2[0].records()
    # Nothing before the commit is read again; nothing after it is skipped.
    reread = [g for g in got2 if g.offset < known.get(g.partition, 0)]
    assert not reread, "%d records before the committed offsets read again, e.g. %r" % (
        len(reread), reread[:5])
    first = {}
    for g in got2:
        first.setdefault(g.partition, g.offset)
    bad_start = {p: (o, known.get(p, 0)) for p, o in first.items() if o != known.get(p, 0)}
    assert not bad_start, "resumed at (offset, committed) %r" % bad_start
    klib.verify(got1 + got2, recs, check_headers=False, ts_exact=False, partitions=set(range(P)))


# ---------------------------------------------------------------------------------------------------
# Fifty independent groups read one topic at the same time (confluent-kafka, one thread each).


def test_groups_fifty_groups_read_one_topic(broker):
    from confluent_kafka import Consumer, KafkaError
    topic, n_groups, parts = "grp-fifty", 50, 4
    klib.ck_create_topic(broker.bootstrap, topic, parts)
    recs = klib.make_records(3000, nkeys=300)
    klib.ck_produce_ok(broker.bootstrap, topic, recs)
    barrier = threading.Barrier(n_groups, timeout=60)
    results, errors = {}, {}

    def run(i):
        group = "fifty-%02d" % i
        try:
            c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                          "client.id": group, "enable.auto.commit": True,
                          "auto.offset.reset": "earliest", "enable.partition.eof": True,
                          "fetch.wait.max.ms": 100, "socket.timeout.ms": 10000})
            got, eof = [], set()
            try:
                barrier.wait()
                c.subscribe([topic])
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    for m in c.consume(num_messages=1000, timeout=0.2):
                        e = m.error()
                        if e is not None:
                            if e.code() == KafkaError._PARTITION_EOF:
                                eof.add(m.partition())
                            else:
                                raise AssertionError("%s: consumer error %s" % (group, e))
                            continue
                        eof.discard(m.partition())
                        tst, ts = m.timestamp()
                        got.append(klib.Got(m.partition(), m.offset(), m.key(), m.value(),
                                            m.headers(), tst, ts))
                    if len(got) >= len(recs) and len(eof) == parts:
                        break
                results[group] = got
            finally:
                c.close()
        except BaseException as e:  # noqa: BLE001 - reported below, per group
            errors[group] = repr(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n_groups)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, 180 - (time.monotonic() - t0)))
    assert not any(t.is_alive() for t in threads), "consumer threads still running after 180 s"
    assert not errors, "%d groups failed: %r" % (len(errors), sorted(errors.items())[:5])
    problems = []
    for group in sorted(results):
        try:
            klib.verify(results[group], recs, partitions=set(range(parts)))
        except AssertionError as e:
            problems.append("%s: %s" % (group, str(e)[:400]))
    assert not problems, "%d of %d groups read wrong data:\n%s" % (len(problems), n_groups,
                                                                  "\n".join(problems[:5]))
    assert len(results) == n_groups
    # Every group is listed, and each committed the log end of every partition.
    with kwire.GroupConn(broker.port) as c:
        lg = c.call("list", version=0)
    want = {"fifty-%02d" % i for i in range(n_groups)}
    assert lg["error"] == 0 and want <= set(lg["groups"]), "ListGroups %r" % lg
    assert all(lg["groups"][g] == "consumer" for g in want), "ListGroups %r" % lg


# ---------------------------------------------------------------------------------------------------
# OffsetCommit metadata round trip (kafka-python, raw requests of every version), across a restart.


def test_groups_offset_commit_metadata_roundtrip(broker):
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
    topic = "grp-meta"
    klib.ck_create_topic(broker.bootstrap, topic, 3)
    klib.ck_produce_ok(broker.bootstrap, topic, klib.make_records(300, nkeys=30))
    metas = {0: "plain", 1: 'ünïcödé {"json": [1, 2]} \t end', 2: ""}
    offs = {0: 10, 1: 20, 2: 30}
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="meta-kp",
                       enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        kc.assign(tps)
        kc.commit({TopicPartition(topic, p): OffsetAndMetadata(offs[p], metas[p])
                   for p in range(3)})
        back = {tp.partition: kc.committed(tp, metadata=True) for tp in tps}
    finally:
        kc.close(autocommit=False)
    assert {p: (om.offset, om.metadata) for p, om in back.items()} == \
        {p: (offs[p], metas[p]) for p in range(3)}, "kafka-python committed() %r" % back

    # Raw commits of every version, each with its own metadata, read back by every version.
    big = "x" * 5000
    with kwire.GroupConn(broker.port) as c:
        for v in (2, 3, 4, 5):
            md = "v%d-meta-%s" % (v, "é" * v)
            r = c.call("commit", "meta-raw", {topic: [(0, 100 + v, md), (1, 200 + v, None)]},
                       version=v)
            assert r["errors"] == {(topic, 0): 0, (topic, 1): 0}, "OffsetCommit v%d %r" % (v, r)
            for fv in (1, 2, 3, 4):
                f = c.call("fetch", "meta-raw", {topic: [0, 1, 2]}, version=fv)
                assert f["offsets"] == {(topic, 0): (100 + v, md, 0), (topic, 1): (200 + v, "", 0),
                                        (topic, 2): (-1, "", 0)}, \
                    "OffsetFetch v%d after OffsetCommit v%d: %r" % (fv, v, f)
        # Metadata over the limit is refused (OFFSET_METADATA_TOO_LARGE) and changes nothing.
        r = c.call("commit", "meta-raw", {topic: [(0, 999, big)]}, version=2)
        assert r["errors"] == {(topic, 0): 12}, "OffsetCommit with 5000-byte metadata: %r" % r
        f = c.call("fetch", "meta-raw", {topic: [0]}, version=1)
        assert f["offsets"][(topic, 0)] == (105, "v5-meta-" + "é" * 5, 0), f
        # The kafka-python group, seen raw, and all offsets of a group (null topics, v2+).
        f = c.call("fetch", "meta-kp", None, version=2)
        assert f["offsets"] == {(topic, p): (offs[p], metas[p], 0) for p in range(3)}, f

    broker.restart()
    with kwire.GroupConn(broker.port) as c:
        f = c.call("fetch", "meta-kp", {topic: [0, 1, 2]}, version=4)
        assert f["offsets"] == {(topic, p): (offs[p], metas[p], 0) for p in range(3)}, \
            "after a restart: %r" % f
        f = c.call("fetch", "meta-raw", {topic: [0, 1]}, version=3)
        assert f["offsets"] == {(topic, 0): (105, "v5-meta-" + "é" * 5, 0),
                                (topic, 1): (205, "", 0)}, "after a restart: %r" % f
    # And confluent-kafka sees the same offsets.
    from confluent_kafka import Consumer, TopicPartition as CTP
    cc = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "meta-kp"})
    try:
        got = cc.committed([CTP(topic, p) for p in range(3)], timeout=10)
    finally:
        cc.close()
    assert {tp.partition: tp.offset for tp in got} == offs, got


# ---------------------------------------------------------------------------------------------------
# `factlog groups list|describe` after a partial read by two confluent-kafka members.


def factlog_groups(broker, *args):
    cp = klib.run([broker.binary, "groups"] + list(args) + ["--bootstrap", broker.bootstrap],
                  timeout=60)
    return cp.stdout.decode("utf-8", "replace")


def parse_describe(text):
    """(header line, {member_id: (client_id, assigned text)}, {partition: row dict})."""
    lines = text.splitlines()
    header = lines[0] if lines else ""
    mem, rows = {}, {}
    for ln in lines[1:]:
        f = ln.split()
        if len(f) >= 8 and f[0] == "member" and f[2] == "client" and f[4] == "host":
            mem[f[1]] = (f[3], " ".join(f[7:]))
        elif len(f) == 7 and f[0] != "TOPIC" and f[1].isdigit():
            rows[int(f[1])] = {"topic": f[0], "current": int(f[2]), "end": int(f[3]),
                               "lag": int(f[4]), "behind": float(f[5]), "member": f[6]}
    return header, mem, rows


def test_groups_cli_list_describe_lag(broker):
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    topic, group, parts, per = "grp-cli", "cli-group", 3, 1000
    klib.ck_create_topic(broker.bootstrap, topic, parts)
    base_ts = klib.now_ms() - 600_000  # ten minutes ago: SECONDS-BEHIND ~ 600
    recs = klib.make_records(parts * per, nkeys=parts * 10, base_ts=base_ts, headers=False)
    klib.ck_produce_ok(broker.bootstrap, topic, recs, partition_of=lambda r: r.i % parts)
    read_to = {0: 250, 1: 500, 2: 1000}  # records read (and committed) per partition
    cons = {}
    try:
        for name in ("cli-a", "cli-b"):
            cons[name] = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                                   "client.id": name, "enable.auto.commit": False,
                                   "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
                                   "session.timeout.ms": 10000, "socket.timeout.ms": 10000})
        for c in cons.values():
            c.subscribe([topic])
        pos = {p: 0 for p in range(parts)}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for c in cons.values():
                for m in c.consume(num_messages=500, timeout=0.05):
                    if m.error() is not None:
                        assert m.error().code() == KafkaError._PARTITION_EOF, str(m.error())
                        continue
                    p = m.partition()
                    if m.offset() < read_to[p]:
                        assert m.offset() == pos[p], "partition %d: offset %d, want %d" % (
                            p, m.offset(), pos[p])
                        pos[p] = m.offset() + 1
            owners = {p: n for n, c in cons.items() for tp in c.assignment() for p in [tp.partition]}
            if pos == read_to and len(owners) == parts and all(c.assignment()
                                                               for c in cons.values()):
                break
        assert pos == read_to, "read %r, want %r" % (pos, read_to)
        owners = {tp.partition: n for n, c in cons.items() for tp in c.assignment()}
        for n, c in cons.items():
            mine = [TopicPartition(topic, p, read_to[p]) for p, o in owners.items() if o == n]
            res = c.commit(offsets=mine, asynchronous=False)
            assert all(tp.error is None for tp in res), res
        # Both members stay in the group (librdkafka heartbeats in its own threads).
        listing = factlog_groups(broker, "list")
        row = [ln.split() for ln in listing.splitlines() if ln.split()[:1] == [group]]
        assert row == [[group, "Stable", "consumer", "2"]], "groups list:\n%s" % listing
        text = factlog_groups(broker, "describe", group)
        header, mem, rows = parse_describe(text)
        assert header == "group %s: state Stable, protocol consumer/range, 2 members" % group, text
        assert sorted(c for c, _ in mem.values()) == ["cli-a", "cli-b"], text
        member_of = {cid: mid for mid, (cid, _) in mem.items()}
        for n, c in cons.items():
            mine = sorted(tp.partition for tp in c.assignment())
            assert mem[member_of[n]][1] == "%s:%s" % (topic, ",".join(map(str, mine))), \
                "%s owns %s; describe says %r\n%s" % (n, mine, mem[member_of[n]][1], text)
        assert sorted(rows) == list(range(parts)), text
        now = time.time()
        for p in range(parts):
            r = rows[p]
            assert (r["topic"], r["current"], r["end"], r["lag"]) == \
                (topic, read_to[p], per, per - read_to[p]), "partition %d row %r\n%s" % (p, r, text)
            assert r["member"] == member_of[owners[p]], "partition %d: member %s, owner %s\n%s" % (
                p, r["member"], owners[p], text)
            if r["lag"] > 0:  # the first unread record is (partition p, index read_to*parts + p)
                want = now - (base_ts + read_to[p] * parts + p) / 1000.0
                assert abs(r["behind"] - want) < 60, "partition %d: %s seconds behind, want ~%.0f" \
                    "\n%s" % (p, r["behind"], want, text)
            else:
                assert r["behind"] == 0, text
    finally:
        for c in cons.values():
            c.close()
    # Both left: the group is empty, the committed offsets and the lag stay.
    text = klib.wait_until(lambda: (lambda t: t if "state Empty" in t else None)(
        factlog_groups(broker, "describe", group)), 20, "the group to become Empty")
    header, mem, rows = parse_describe(text)
    assert header == "group %s: state Empty, protocol consumer/-, 0 members" % group, text
    assert not mem, text
    assert {p: (r["current"], r["lag"], r["member"]) for p, r in rows.items()} == \
        {p: (read_to[p], per - read_to[p], "-") for p in range(parts)}, text


# ---------------------------------------------------------------------------------------------------
# Bad group requests from a raw socket; a healthy confluent-kafka group keeps consuming throughout.


class HealthyGroup:
    """One confluent-kafka member of group "healthy" consuming a topic in a thread."""

    def __init__(self, broker, topic):
        from confluent_kafka import Consumer
        self.c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "healthy",
                           "client.id": "healthy", "enable.auto.commit": False,
                           "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
                           "session.timeout.ms": 10000, "socket.timeout.ms": 10000})
        self.topic, self.got, self.assigns, self.errors = topic, [], [], []
        self.stop = threading.Event()
        self.c.subscribe([topic], on_assign=lambda c, ps: self.assigns.append(
            sorted(tp.partition for tp in ps)))
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        from confluent_kafka import KafkaError
        try:
            while not self.stop.is_set():
                for m in self.c.consume(num_messages=500, timeout=0.1):
                    if m.error() is not None:
                        if m.error().code() != KafkaError._PARTITION_EOF:
                            self.errors.append(str(m.error()))
                        continue
                    self.got.append(klib.Got(m.partition(), m.offset(), m.key(), m.value(),
                                             None, None, None))
        finally:
            self.c.close()

    def close(self):
        self.stop.set()
        self.th.join(timeout=30)
        assert not self.th.is_alive(), "healthy consumer thread did not stop"


def raw_join(c, group, version=2, member_id=b"", protocols=None, session_ms=30000, **kw):
    if protocols is None:
        protocols = [(b"range", kwire.consumer_subscription(["grp-bad-t"]))]
    return c.call("join", group, member_id, protocols, version=version, session_ms=session_ms,
                  **kw)


def test_groups_bad_requests(broker):
    topic = "grp-bad-t"
    klib.ck_create_topic(broker.bootstrap, topic, 2)
    recs = klib.make_records(2000, nkeys=100, headers=False)
    first, second = recs[:1000], recs[1000:]
    klib.ck_produce_ok(broker.bootstrap, topic, first)
    healthy = HealthyGroup(broker, topic)
    try:
        klib.wait_until(lambda: len(healthy.got) >= len(first), 30,
                        lambda: "the healthy group to read %d records (got %d)" % (
                            len(first), len(healthy.got)))

        with kwire.GroupConn(broker.port) as c, kwire.GroupConn(broker.port) as c2:
            fc = c.call("find", "bad-1", version=0)
            assert (fc["error"], fc["node_id"], fc["host"], fc["port"]) == \
                (0, 0, "127.0.0.1", broker.port), "FindCoordinator v0 %r" % fc
            for v in (1, 2):
                fc = c.call("find", "bad-1", version=v)
                assert (fc["error"], fc["node_id"], fc["host"], fc["port"]) == \
                    (0, 0, "127.0.0.1", broker.port), "FindCoordinator v%d %r" % (v, fc)

            # A one-member group: join (v2, no member-id round trip), sync as leader.
            j = raw_join(c, "bad-1")
            assert j["error"] == 0 and j["member_id"] and j["leader"] == j["member_id"] \
                and j["protocol"] == "range" and len(j["members"]) == 1, "JoinGroup v2 %r" % j
            mid, gen = j["member_id"], j["generation"]
            mine = kwire.consumer_assignment({topic: [0, 1]})
            s = c.call("sync", "bad-1", gen, mid, [(mid, mine)], version=1)
            assert s == {"corr": s["corr"], "error": 0, "assignment": mine}, "SyncGroup %r" % s
            assert c.call("heartbeat", "bad-1", gen, mid, version=1)["error"] == 0

            # Unknown member: 25 from Heartbeat, SyncGroup and OffsetCommit (every version).
            for v in (0, 1, 2, 3):
                r = c.call("heartbeat", "bad-1", gen, "no-such-member", version=v)
                assert r["error"] == 25, "Heartbeat v%d, unknown member: %r" % (v, r)
                r = c.call("sync", "bad-1", gen, "no-such-member", [], version=v)
                assert r["error"] == 25, "SyncGroup v%d, unknown member: %r" % (v, r)
            for v in (2, 3, 4, 5):
                r = c.call("commit", "bad-1", {topic: [(0, 5, "x")]}, generation=gen,
                           member_id="no-such-member", version=v)
                assert r["errors"] == {(topic, 0): 25}, "OffsetCommit v%d, unknown member: %r" % (
                    v, r)
            r = c.call("commit", "bad-1", {topic: [(0, 5, "")]}, generation=-1, member_id="",
                       version=2)
            assert r["errors"] == {(topic, 0): 25}, "simple commit to a group with members: %r" % r
            r = c.call("leave", "bad-1", "no-such-member", version=1)
            assert r["error"] == 25, "LeaveGroup, unknown member: %r" % r
            # A known member with a stale (or future) generation: 22.
            for g in (gen - 1, gen + 1):
                r = c.call("heartbeat", "bad-1", g, mid, version=1)
                assert r["error"] == 22, "Heartbeat generation %d (current %d): %r" % (g, gen, r)
                r = c.call("sync", "bad-1", g, mid, [(mid, mine)], version=1)
                assert r["error"] == 22, "SyncGroup generation %d (current %d): %r" % (g, gen, r)
                r = c.call("commit", "bad-1", {topic: [(0, 5, "")]}, generation=g, member_id=mid,
                           version=2)
                assert r["errors"] == {(topic, 0): 22}, \
                    "OffsetCommit generation %d (current %d): %r" % (g, gen, r)
            # The member's own commit works and reads back.
            r = c.call("commit", "bad-1", {topic: [(1, 7, "mine")]}, generation=gen,
                       member_id=mid, version=5)
            assert r["errors"] == {(topic, 1): 0}, r
            # A bad session timeout: 26, for a new member and for the existing one.
            for sm in (0, 999, 1800001, -1):
                r = raw_join(c2, "bad-1", session_ms=sm)
                assert r["error"] == 26, "JoinGroup session timeout %d: %r" % (sm, r)
                r = raw_join(c2, "bad-2", session_ms=sm)
                assert r["error"] == 26, "JoinGroup (new group) session timeout %d: %r" % (sm, r)
            # A second member whose protocols share nothing with the group's: 23.
            r = raw_join(c2, "bad-1", protocols=[(b"roundrobin", kwire.consumer_subscription(
                [topic]))])
            assert r["error"] == 23, "JoinGroup roundrobin-only into a range group: %r" % r
            r = raw_join(c2, "bad-1", protocols=[(b"range", b"")], protocol_type=b"connect")
            assert r["error"] == 23, "JoinGroup protocol type connect into consumer group: %r" % r
            r = raw_join(c2, "bad-1", protocols=[])
            assert r["error"] == 23, "JoinGroup with no protocols: %r" % r
            # None of that disturbed bad-1: no rebalance, the member still heartbeats fine.
            r = c.call("heartbeat", "bad-1", gen, mid, version=3)
            assert r["error"] == 0, "bad-1's member after the bad requests: %r" % r
            d = c.call("describe", ["bad-1"], version=0)["groups"][0]
            assert (d["state"], d["protocol"], [m["member_id"] for m in d["members"]]) == \
                ("Stable", "range", [mid]), "DescribeGroups bad-1 %r" % d

            # KIP-394: JoinGroup v4+ with an empty member id gets 79 and an id; the rejoin with
            # that id is the real join.
            for v in (4, 5):
                grp = "kip394-v%d" % v
                r = raw_join(c2, grp, version=v)
                assert r["error"] == 79 and r["member_id"], "JoinGroup v%d empty id: %r" % (v, r)
                new_id = r["member_id"]
                r = raw_join(c2, grp, version=v, member_id=new_id)
                assert (r["error"], r["member_id"], r["leader"]) == (0, new_id, new_id) \
                    and r["generation"] >= 1, "JoinGroup v%d rejoin with %s: %r" % (v, new_id, r)
                s = c2.call("sync", grp, r["generation"], new_id, [(new_id, mine)], version=v - 2)
                assert s["error"] == 0 and s["assignment"] == mine, s
                assert c2.call("heartbeat", grp, r["generation"], new_id,
                               version=3)["error"] == 0
                # A made-up id (not handed out) is unknown: 25.
                r = raw_join(c2, grp, version=v, member_id=new_id + "-forged")
                assert r["error"] == 25, "JoinGroup v%d with a forged id: %r" % (v, r)
                assert c2.call("leave", grp, new_id, version=1)["error"] == 0

            # A simple commit (generation -1, no member) to a group without members works.
            for v in (2, 3, 4, 5):
                grp = "simple-%d" % v
                r = c2.call("commit", grp, {topic: [(0, 40 + v, "simple"), (1, 50 + v, None)]},
                            generation=-1, member_id="", version=v)
                assert r["errors"] == {(topic, 0): 0, (topic, 1): 0}, \
                    "simple OffsetCommit v%d: %r" % (v, r)
                f = c2.call("fetch", grp, {topic: [0, 1]}, version=1)
                assert f["offsets"] == {(topic, 0): (40 + v, "simple", 0),
                                        (topic, 1): (50 + v, "", 0)}, f
            f = c2.call("fetch", "never-committed", {topic: [0]}, version=4)
            assert f["offsets"] == {(topic, 0): (-1, "", 0)} and f["error"] == 0, f

            # The member of bad-1 leaves; the group is empty and its commit is still there.
            assert c.call("leave", "bad-1", mid, version=0)["error"] == 0
            f = c.call("fetch", "bad-1", {topic: [0, 1]}, version=2)
            assert f["offsets"] == {(topic, 0): (-1, "", 0), (topic, 1): (7, "mine", 0)}, f

        # The broker is fine and the healthy group still consumes, without having rebalanced.
        broker.assert_alive()
        klib.ck_produce_ok(broker.bootstrap, topic, second)
        klib.wait_until(lambda: len(healthy.got) >= len(recs), 30,
                        lambda: "the healthy group to read %d records (got %d)" % (
                            len(recs), len(healthy.got)))
        time.sleep(0.5)
    finally:
        healthy.close()
    assert not healthy.errors, healthy.errors[:5]
    assert healthy.assigns == [[0, 1]], "healthy group's assignments %r" % healthy.assigns
    klib.verify(healthy.got, recs, check_headers=False, ts_exact=False, partitions={0, 1})


# ---------------------------------------------------------------------------------------------------
# The rebalance state machine from raw sockets: a second member joins a Stable group, the leader
# learns it by heartbeat and rejoins; the follower's SyncGroup waits for the leader's; a third
# member's connection dies while its JoinGroup is parked; its session expires; members leave.


def test_groups_raw_rebalance_and_dead_connection(broker):
    topic, g = "grp-raw-t", "raw-reb"
    klib.ck_create_topic(broker.bootstrap, topic, 3)
    sub = {n: kwire.consumer_subscription([topic], user_data=n.encode()) for n in "ABC"}
    port = broker.port

    def hb(conn, gen, mid):
        return conn.call("heartbeat", g, gen, mid, version=1)["error"]

    def describe():
        with kwire.GroupConn(port) as d:
            return d.call("describe", [g], version=1)["groups"][0]

    with kwire.GroupConn(port) as a, kwire.GroupConn(port) as b:
        ja = a.call("join", g, b"", [(b"range", sub["A"])], version=2, session_ms=10000)
        assert ja["error"] == 0 and ja["members"] == [(ja["member_id"], None, sub["A"])], ja
        A, gen1 = ja["member_id"], ja["generation"]
        asg = {A: kwire.consumer_assignment({topic: [0, 1, 2]})}
        s = a.call("sync", g, gen1, A, list(asg.items()), version=1)
        assert s["error"] == 0 and s["assignment"] == asg[A], s
        assert describe()["state"] == "Stable"

        # B joins the Stable group: its JoinGroup waits, A is told to rejoin by its heartbeat.
        cb = b.send("join", g, b"", [(b"range", sub["B"])], version=2, session_ms=10000)
        klib.wait_until(lambda: hb(a, gen1, A) == 27, 5, "A's heartbeat to say 27")
        assert describe()["state"] == "PreparingRebalance"
        ja = a.call("join", g, A, [(b"range", sub["A"])], version=2, session_ms=10000)
        jb = b.recv("join", cb, 2)
        B, gen2 = jb["member_id"], ja["generation"]
        assert ja["error"] == 0 and jb["error"] == 0, (ja, jb)
        assert gen2 == gen1 + 1 and jb["generation"] == gen2, (gen1, ja, jb)
        assert ja["leader"] == A and jb["leader"] == A, "the old leader rejoined: %r %r" % (ja, jb)
        assert ja["protocol"] == jb["protocol"] == "range", (ja, jb)
        assert sorted(ja["members"]) == sorted([(A, None, sub["A"]), (B, None, sub["B"])]), ja
        assert jb["members"] == [], "a follower gets no member list: %r" % jb
        assert describe()["state"] == "CompletingRebalance"
        # Awaiting the leader's assignment: heartbeats are fine, commits must wait (27).
        assert hb(b, gen2, B) == 0
        r = a.call("commit", g, {topic: [(0, 1, "")]}, generation=gen2, member_id=A, version=2)
        assert r["errors"] == {(topic, 0): 27}, "OffsetCommit in CompletingRebalance: %r" % r
        # The follower syncs first and waits for the leader's assignment.
        asg = {A: kwire.consumer_assignment({topic: [0, 1]}),
               B: kwire.consumer_assignment({topic: [2]})}
        cs = b.send("sync", g, gen2, B, [], version=1)
        time.sleep(0.3)
        s = a.call("sync", g, gen2, A, list(asg.items()), version=1)
        assert s["error"] == 0 and s["assignment"] == asg[A], s
        s = b.recv("sync", cs, 1)
        assert s["error"] == 0 and s["assignment"] == asg[B], "follower's SyncGroup %r" % s
        assert (hb(a, gen2, A), hb(b, gen2, B), hb(a, gen1, A)) == (0, 0, 22)
        d = describe()
        assert d["state"] == "Stable" and d["protocol"] == "range" and \
            {m["member_id"]: m["assignment"] for m in d["members"]} == asg, d

        # C joins, and its connection dies while its JoinGroup is parked.
        c = kwire.GroupConn(port)
        c.send("join", g, b"", [(b"range", sub["C"])], version=2, session_ms=1000)
        klib.wait_until(lambda: hb(a, gen2, A) == 27, 5, "A's heartbeat to say 27 after C joined")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # RST: the broker will answer C's JoinGroup on a dead connection
        ca = a.send("join", g, A, [(b"range", sub["A"])], version=2, session_ms=10000)
        cb = b.send("join", g, B, [(b"range", sub["B"])], version=2, session_ms=10000)
        ja, jb = a.recv("join", ca, 2), b.recv("join", cb, 2)
        gen3 = ja["generation"]
        assert ja["error"] == 0 and jb["error"] == 0 and gen3 == gen2 + 1, (ja, jb)
        ids = sorted(m[0] for m in ja["members"])
        assert len(ids) == 3 and A in ids and B in ids, "members after C joined: %r" % ids
        C = [i for i in ids if i not in (A, B)][0]
        asg = {A: kwire.consumer_assignment({topic: [0]}),
               B: kwire.consumer_assignment({topic: [1]}),
               C: kwire.consumer_assignment({topic: [2]})}
        cs = b.send("sync", g, gen3, B, [], version=1)
        s = a.call("sync", g, gen3, A, list(asg.items()), version=1)
        assert s["error"] == 0 and s["assignment"] == asg[A], s
        s = b.recv("sync", cs, 1)
        assert s["error"] == 0 and s["assignment"] == asg[B], s
        broker.assert_alive()
        # C never heartbeats: after its 1 s session it is dropped and the others rebalance.
        t0 = time.monotonic()
        klib.wait_until(lambda: hb(a, gen3, A) == 27 and hb(b, gen3, B) == 27, 10,
                        "the others to be told to rejoin after C's session expired")
        assert time.monotonic() - t0 < 5, "C's 1 s session expired only after %.1f s" % (
            time.monotonic() - t0)
        ca = a.send("join", g, A, [(b"range", sub["A"])], version=2, session_ms=10000)
        cb = b.send("join", g, B, [(b"range", sub["B"])], version=2, session_ms=10000)
        ja, jb = a.recv("join", ca, 2), b.recv("join", cb, 2)
        gen4 = ja["generation"]
        assert ja["error"] == 0 and gen4 == gen3 + 1 and jb["generation"] == gen4, (ja, jb)
        assert sorted(m[0] for m in ja["members"]) == sorted([A, B]), ja
        asg = {A: kwire.consumer_assignment({topic: [0, 1]}),
               B: kwire.consumer_assignment({topic: [2]})}
        cs = b.send("sync", g, gen4, B, [], version=1)
        assert a.call("sync", g, gen4, A, list(asg.items()), version=1)["error"] == 0
        assert b.recv("sync", cs, 1)["error"] == 0

        # A (the leader) leaves: B rejoins alone and becomes the leader.
        assert a.call("leave", g, A, version=1)["error"] == 0
        assert hb(b, gen4, B) == 27
        jb = b.call("join", g, B, [(b"range", sub["B"])], version=2, session_ms=10000)
        assert (jb["error"], jb["generation"], jb["leader"]) == (0, gen4 + 1, B), jb
        assert jb["members"] == [(B, None, sub["B"])], jb
        asg = {B: kwire.consumer_assignment({topic: [0, 1, 2]})}
        s = b.call("sync", g, gen4 + 1, B, list(asg.items()), version=1)
        assert s["error"] == 0 and s["assignment"] == asg[B], s
        assert b.call("leave", g, B, version=0)["error"] == 0
        d = describe()
        assert d["state"] == "Empty" and d["members"] == [], d
    broker.assert_alive()


# ---------------------------------------------------------------------------------------------------
# DeleteGroups: empty groups go (with their offsets, also after a restart), busy ones stay.


def test_groups_delete_groups(broker):
    topic = "grp-del-t"
    klib.ck_create_topic(broker.bootstrap, topic, 1)
    with kwire.GroupConn(broker.port) as c, kwire.GroupConn(broker.port) as m:
        for grp in ("del-a", "del-b"):
            r = c.call("commit", grp, {topic: [(0, 11, "m")]}, version=2)
            assert r["errors"] == {(topic, 0): 0}, r
        j = m.call("join", "del-busy", b"", [(b"range", kwire.consumer_subscription([topic]))],
                   version=2)
        assert j["error"] == 0, j
        r = c.call("delete", ["del-a", "del-busy", "del-nope"], version=0)
        assert r["errors"] == {"del-a": 0, "del-busy": 68, "del-nope": 69}, \
            "DeleteGroups (want 0, NON_EMPTY_GROUP 68, GROUP_ID_NOT_FOUND 69): %r" % r
        f = c.call("fetch", "del-a", {topic: [0]}, version=1)
        assert f["offsets"] == {(topic, 0): (-1, "", 0)}, "a deleted group's offsets: %r" % f
        groups = c.call("list", version=1)["groups"]
        assert "del-a" not in groups and {"del-b", "del-busy"} <= set(groups), groups
    broker.restart()
    with kwire.GroupConn(broker.port) as c:
        f = c.call("fetch", "del-a", {topic: [0]}, version=1)
        assert f["offsets"] == {(topic, 0): (-1, "", 0)}, "deleted group after a restart: %r" % f
        f = c.call("fetch", "del-b", {topic: [0]}, version=1)
        assert f["offsets"] == {(topic, 0): (11, "m", 0)}, "kept group after a restart: %r" % f
        assert "del-a" not in c.call("list", version=0)["groups"]
        r = c.call("delete", ["del-b"], version=1)
        assert r["errors"] == {"del-b": 0}, r
    broker.restart()
    with kwire.GroupConn(broker.port) as c:
        f = c.call("fetch", "del-b", {topic: [0]}, version=1)
        assert f["offsets"] == {(topic, 0): (-1, "", 0)}, "deleted group after a restart: %r" % f
