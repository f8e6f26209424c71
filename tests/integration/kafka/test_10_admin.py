"""Topic administration through confluent-kafka's AdminClient and kafka-python's KafkaAdminClient."""
import time

import pytest

import klib


def _ck_err(fut, timeout=15):
    """The KafkaError a future failed with (None if it succeeded)."""
    from confluent_kafka import KafkaException
    try:
        fut.result(timeout=timeout)
    except KafkaException as e:
        return e.args[0]
    return None


def _wait_gone(bootstrap, topic, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if klib.ck_partitions(bootstrap, topic) is None:
            return
        time.sleep(0.2)
    raise AssertionError("topic %s still listed in Metadata %ss after delete" % (topic, timeout))


def test_confluent_admin_create_delete(broker):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic
    a = klib.ck_admin(broker.bootstrap)
    t = "adm-ck"

    fs = a.create_topics([NewTopic(t, 3, 1)], operation_timeout=10, request_timeout=15)
    assert _ck_err(fs[t]) is None
    assert klib.wait_partitions(broker.bootstrap, t, 3) == [0, 1, 2]

    md = a.list_topics(timeout=10)
    assert [(b.id, b.host, b.port) for b in md.brokers.values()] == [(0, "127.0.0.1", broker.port)]
    assert md.controller_id == 0, "controller_id %r, want 0" % md.controller_id
    assert all(p.leader == 0 for p in md.topics[t].partitions.values())

    fs = a.create_topics([NewTopic(t, 3, 1)], operation_timeout=10, request_timeout=15)
    err = _ck_err(fs[t])
    assert err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS, \
        "second create of %s: %r, want TOPIC_ALREADY_EXISTS (36)" % (t, err)

    # validate_only must not create anything.
    fs = a.create_topics([NewTopic("adm-ck-validate", 2, 1)], validate_only=True,
                         operation_timeout=10, request_timeout=15)
    assert _ck_err(fs["adm-ck-validate"]) is None
    assert klib.ck_partitions(broker.bootstrap, "adm-ck-validate") is None, \
        "validate_only CreateTopics created the topic"

    klib.ck_produce_ok(broker.bootstrap, t, klib.make_records(300, nkeys=30))
    fs = a.delete_topics([t], operation_timeout=10, request_timeout=15)
    assert _ck_err(fs[t]) is None
    _wait_gone(broker.bootstrap, t)

    fs = a.delete_topics([t], operation_timeout=10, request_timeout=15)
    err = _ck_err(fs[t])
    assert err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, \
        "delete of a missing topic: %r, want UNKNOWN_TOPIC_OR_PARTITION (3)" % err

    # The name is free again and the new topic starts empty.
    fs = a.create_topics([NewTopic(t, 2, 1)], operation_timeout=10, request_timeout=15)
    assert _ck_err(fs[t]) is None
    klib.wait_partitions(broker.bootstrap, t, 2)
    got = klib.ck_consume(broker.bootstrap, t, 0, timeout=15)
    assert got == [], "re-created topic holds %d old records, e.g. %r" % (len(got), got[:3])


def test_confluent_admin_create_partitions(broker):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewPartitions
    a = klib.ck_admin(broker.bootstrap)
    t = "adm-parts"
    klib.ck_create_topic(broker.bootstrap, t, 2)
    fs = a.create_partitions([NewPartitions(t, 5)], operation_timeout=10, request_timeout=15)
    assert _ck_err(fs[t]) is None
    assert klib.wait_partitions(broker.bootstrap, t, 5) == [0, 1, 2, 3, 4]

    fs = a.create_partitions([NewPartitions(t, 3)], operation_timeout=10, request_timeout=15)
    err = _ck_err(fs[t])
    assert err is not None and err.code() == KafkaError.INVALID_PARTITIONS, \
        "shrinking 5 -> 3 partitions: %r, want INVALID_PARTITIONS (37)" % err

    # The new partitions take records.
    recs = klib.make_records(500, nkeys=50)
    klib.ck_produce_ok(broker.bootstrap, t, recs, partition_of=lambda r: r.i % 5)
    got = klib.ck_consume(broker.bootstrap, t, len(recs))
    per_p = klib.verify(got, recs, partitions=set(range(5)))
    assert sorted(per_p) == [0, 1, 2, 3, 4]


def test_confluent_admin_describe_alter_configs(broker):
    from confluent_kafka.admin import ConfigResource
    a = klib.ck_admin(broker.bootstrap)
    t = "adm-configs"
    klib.ck_create_topic(broker.bootstrap, t, 1)
    res = ConfigResource(ConfigResource.Type.TOPIC, t)
    configs = a.describe_configs([res], request_timeout=15)[res].result(timeout=15)
    assert configs, "DescribeConfigs returned no config for topic %s" % t
    for name, entry in configs.items():
        assert entry.name == name
    assert "retention.ms" in configs, "no retention.ms in %s" % sorted(configs)

    res = ConfigResource(ConfigResource.Type.TOPIC, t, set_config={"retention.ms": "86400000"})
    a.alter_configs([res], request_timeout=15)[res].result(timeout=15)
    res = ConfigResource(ConfigResource.Type.TOPIC, t)
    configs = a.describe_configs([res], request_timeout=15)[res].result(timeout=15)
    assert configs["retention.ms"].value == "86400000", \
        "after AlterConfigs retention.ms=86400000, DescribeConfigs says %r" % (
            configs["retention.ms"].value)


def test_kafka_python_admin_create_delete(broker):
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        t = "adm-kp"
        a.create_topics([NewTopic(t, 4, 1)], timeout_ms=10000)
        assert klib.wait_partitions(broker.bootstrap, t, 4) == [0, 1, 2, 3]
        assert t in a.list_topics()
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics([NewTopic(t, 4, 1)], timeout_ms=10000)
        a.delete_topics([t], timeout_ms=10000)
        _wait_gone(broker.bootstrap, t)
        assert t not in a.list_topics()
        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics([t], timeout_ms=10000)
    finally:
        a.close()


def test_kafkajs_admin(broker):
    t = "adm-kjs"
    res = klib.kjs(broker.bootstrap, [
        {"op": "createTopics", "topics": [{"topic": t, "partitions": 3}]},
        {"op": "createTopics", "topics": [{"topic": t, "partitions": 3}]},
        {"op": "listTopics"},
        {"op": "deleteTopics", "topics": [t]},
    ])
    assert res[0]["created"] is True, res[0]
    # kafkajs maps TOPIC_ALREADY_EXISTS to `false`, any other error throws.
    assert res[1]["created"] is False, "second createTopics: %r, want false (already exists)" % res[1]
    assert t in res[2]["topics"], res[2]
    _wait_gone(broker.bootstrap, t)
    res = klib.kjs(broker.bootstrap, [{"op": "listTopics"}])
    assert t not in res[0]["topics"], "kafkajs still lists %s after delete: %r" % (t, res[0])


def test_auto_create_on_produce(broker):
    """--auto-create-topics: a producer's Metadata request creates a missing topic."""
    t = "adm-auto"
    recs = klib.make_records(100, nkeys=10)
    klib.ck_produce_ok(broker.bootstrap, t, recs)
    got = klib.ck_consume(broker.bootstrap, t, len(recs))
    klib.verify(got, recs)
