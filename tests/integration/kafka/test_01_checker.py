"""The checker itself (no broker): verify() must reject each kind of damage the broker could do,
so a passing round-trip test means something."""
import pytest

import klib


def _clean():
    recs = klib.make_records(400, nkeys=20)
    got, next_off = [], {}
    for r in recs:
        p = int(r.key[-4:]) % 3  # same key -> same partition
        off = next_off.get(p, 0)
        next_off[p] = off + 1
        got.append(klib.Got(p, off, r.key, r.value, list(r.headers), 1, r.ts))
    return recs, got


def test_clean_data_passes():
    recs, got = _clean()
    klib.verify(got, recs, partitions={0, 1, 2})


def _damage_value(got):
    got[5].value = got[5].value[:-1] + b"X"


def _damage_key(got):
    got[6].key = b"key-9999"


def _damage_header_value(got):
    got[7].headers = [(n, v + b"!") if n == "bin" else (n, v) for n, v in got[7].headers]


def _damage_header_order(got):
    got[8].headers = list(reversed(got[8].headers))


def _drop_header(got):
    got[8].headers = got[8].headers[:-1]


def _damage_timestamp(got):
    got[9].ts += 1


def _damage_ts_type(got):
    got[9].ts_type = 2


def _drop_record(got):
    del got[10]


def _duplicate_record(got):
    g = got[11]
    got.append(klib.Got(g.partition, 10_000, g.key, g.value, g.headers, g.ts_type, g.ts))


def _swap_order_within_key(got):
    # Records 0 and 20 share key-0000 (seq 0 and 1): swap their values, keeping the offsets.
    a, b = got[0], got[20]
    a.value, b.value, a.headers, b.headers, a.ts, b.ts = b.value, a.value, b.headers, a.headers, \
        b.ts, a.ts


def _offset_gap(got):
    for g in got:
        if g.partition == 1 and g.offset >= 5:
            g.offset += 1


def _key_in_two_partitions(got):
    g = got[0]  # key-0000 lives in partition 0; move its first record to partition 2
    g.partition, g.offset = 2, max(x.offset for x in got if x.partition == 2) + 1


@pytest.mark.parametrize("damage", [
    _damage_value, _damage_key, _damage_header_value, _damage_header_order, _drop_header,
    _damage_timestamp, _damage_ts_type, _drop_record, _duplicate_record, _swap_order_within_key,
    _offset_gap, _key_in_two_partitions,
], ids=lambda f: f.__name__.lstrip("_"))
def test_damage_is_caught(damage):
    recs, got = _clean()
    damage(got)
    with pytest.raises(AssertionError):
        klib.verify(got, recs, partitions={0, 1, 2})
