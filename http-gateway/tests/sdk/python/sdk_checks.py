#!/usr/bin/env python3
"""The official Aliyun MQ HTTP Python SDK (mq_http_sdk 1.0.3) against rmq-gateway.

Written the way the SDK's samples are: an MQClient from endpoint and AccessKey pair, producers
and consumers from an instance id and topic. Only the endpoint, keys, instance id and names come
from the environment (tests/sdk/run.sh sets them):

  MQ_ENDPOINT, MQ_ACCESS_KEY_ID, MQ_ACCESS_KEY_SECRET, MQ_INSTANCE_ID,
  MQ_TOPIC, MQ_ORDER_TOPIC, MQ_TIMED_TOPIC   topics that exist as {instance}%{topic}
  MQ_MISSING_TOPIC                           a topic nobody created
  MQ_GROUP_PREFIX                            prefix of fresh consumer group ids
  MQ_INVISIBLE_SECONDS                       the gateway's invisible_time_ms / 1000

Prints one line per check and exits non-zero when a check fails that is not listed in
EXPECTED_TO_FAIL, or when a listed one passes (then the list is out of date).
"""
import hashlib
import os
import sys
import time
import traceback

from mq_http_sdk.mq_client import MQClient
from mq_http_sdk.mq_exception import MQExceptionBase
from mq_http_sdk.mq_producer import TopicMessage
import mq_http_sdk.mq_client as mq_client_module

# Checks known to fail, with the reason (none at present).
EXPECTED_TO_FAIL = {}

endpoint = os.environ["MQ_ENDPOINT"]
access_id = os.environ["MQ_ACCESS_KEY_ID"]
access_key = os.environ["MQ_ACCESS_KEY_SECRET"]
instance_id = os.environ["MQ_INSTANCE_ID"]
topic_name = os.environ["MQ_TOPIC"]
order_topic = os.environ["MQ_ORDER_TOPIC"]
timed_topic = os.environ["MQ_TIMED_TOPIC"]
missing_topic = os.environ["MQ_MISSING_TOPIC"]
group_prefix = os.environ["MQ_GROUP_PREFIX"]
invisible_seconds = int(os.environ.get("MQ_INVISIBLE_SECONDS", "5"))
# A second gateway instance in front of the same broker.
endpoint2 = os.environ["MQ_ENDPOINT_2"]

mq_client = MQClient(endpoint, access_id, access_key)


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def md5_upper(text):
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def server_error(fn):
    """Runs fn, which must fail with an MQ server error; returns (code, message)."""
    try:
        fn()
    except MQExceptionBase as e:
        return e.type, e.message
    raise CheckFailed("the call succeeded but should have failed")


def drain(consumer, want, wait_seconds=3, deadline_seconds=60, ack=True, orderly=False):
    """Consumes until `want` messages arrived or the deadline passed; acks them unless told not to."""
    got = []
    end = time.time() + deadline_seconds
    while len(got) < want and time.time() < end:
        try:
            if orderly:
                msgs = consumer.consume_message_orderly(16, wait_seconds)
            else:
                msgs = consumer.consume_message(16, wait_seconds)
        except MQExceptionBase as e:
            if e.type == "MessageNotExist":
                continue
            raise
        got.extend(msgs)
        if ack:
            consumer.ack_message([m.receipt_handle for m in msgs])
    return got


# ---- checks ------------------------------------------------------------------------------------

def publish_100_with_tags_keys_properties():
    producer = mq_client.get_producer(instance_id, topic_name)
    for i in range(100):
        body = "python message %d <&> 中文" % i
        msg = TopicMessage(body, "TagA" if i % 2 == 0 else "TagB")
        msg.put_property("a", i)
        msg.put_property("run", group_prefix)
        msg.set_message_key("key-%d" % i)
        re_msg = producer.publish_message(msg)
        expect(len(re_msg.message_id) > 0, "no MessageId")
        expect(re_msg.message_body_md5 == md5_upper(body),
               "MessageBodyMD5 %s != %s" % (re_msg.message_body_md5, md5_upper(body)))


def consume_long_poll_tag_filter_ack():
    consumer = mq_client.get_consumer(instance_id, topic_name, group_prefix + "_tags", "TagA")
    got = drain(consumer, 50)
    expect(len(got) == 50, "consumed %d TagA messages, want 50" % len(got))
    for m in got:
        expect(m.message_tag == "TagA", "tag filter let %r through" % m.message_tag)
        i = int(m.get_property("a"))
        expect(m.message_body == "python message %d <&> 中文" % i, "body %r" % m.message_body)
        expect(m.get_message_key() == "key-%d" % i, "key %r" % m.get_message_key())
        expect(m.message_body_md5 == md5_upper(m.message_body), "md5")
        expect(m.consumed_times == 1, "ConsumedTimes %d" % m.consumed_times)
    # Everything acked: nothing more for this group; a long poll waits its time, then 404.
    start = time.time()
    code, _ = server_error(lambda: consumer.consume_message(16, 3))
    expect(code == "MessageNotExist", "after acking all: %s" % code)
    expect(time.time() - start >= 2.5, "the long poll returned after %.1fs" % (time.time() - start))
    # A long poll answers as soon as a message arrives. The SDK's MQClient holds one HTTP
    # connection, busy with the long poll: publish through a second client, as a separate
    # producer program would.
    producer = MQClient(endpoint, access_id, access_key).get_producer(instance_id, topic_name)

    def publish_later():
        time.sleep(1)
        producer.publish_message(TopicMessage("late", "TagA"))

    import threading
    t = threading.Thread(target=publish_later)
    t.start()
    start = time.time()
    msgs = consumer.consume_message(1, 10)
    t.join()
    expect(msgs[0].message_body == "late", "long poll got %r" % msgs[0].message_body)
    expect(time.time() - start < 5, "long poll took %.1fs" % (time.time() - start))
    consumer.ack_message([m.receipt_handle for m in msgs])


def unacked_message_comes_back_with_new_handle():
    producer = mq_client.get_producer(instance_id, topic_name)
    producer.publish_message(TopicMessage("redeliver me", "TagR"))
    consumer = mq_client.get_consumer(instance_id, topic_name, group_prefix + "_redeliver", "TagR")
    first = drain(consumer, 1, ack=False)
    expect(len(first) == 1, "first delivery missing")
    expect(first[0].next_consume_time > int(time.time() * 1000), "NextConsumeTime in the past")
    code, _ = server_error(lambda: consumer.consume_message(1, 1))
    expect(code == "MessageNotExist", "invisible message was handed out again at once")
    time.sleep(invisible_seconds + 1)
    second = drain(consumer, 1, ack=False)
    expect(len(second) == 1, "not delivered again")
    expect(second[0].message_id == first[0].message_id, "another message came")
    expect(second[0].receipt_handle != first[0].receipt_handle, "same receipt handle")
    expect(second[0].consumed_times == 2, "ConsumedTimes %d" % second[0].consumed_times)
    # The first handle is stale now; the second acks.
    code, _ = server_error(lambda: consumer.ack_message([first[0].receipt_handle]))
    expect(code in ("MessageNotExist", "ReceiptHandleError"), "stale handle: %s" % code)
    consumer.ack_message([second[0].receipt_handle])


def partial_ack_failure():
    producer = mq_client.get_producer(instance_id, topic_name)
    producer.publish_message(TopicMessage("partial", "TagP"))
    consumer = mq_client.get_consumer(instance_id, topic_name, group_prefix + "_partial", "TagP")
    got = drain(consumer, 1, ack=False)
    expect(len(got) == 1, "nothing consumed")
    try:
        consumer.ack_message([got[0].receipt_handle, "not-a-handle"])
        raise CheckFailed("a bogus handle was accepted")
    except MQExceptionBase as e:
        expect(len(e.sub_errors) == 1, "sub errors %r" % e.sub_errors)
        expect(e.sub_errors[0]["ReceiptHandle"] == "not-a-handle", "%r" % e.sub_errors)
        expect(e.sub_errors[0]["ErrorCode"] == "ReceiptHandleError", "%r" % e.sub_errors)
    # The good handle of the same request was acked.
    time.sleep(invisible_seconds + 1)
    code, _ = server_error(lambda: consumer.consume_message(1, 1))
    expect(code == "MessageNotExist", "the acked message came back")


def ack_through_another_instance():
    producer = mq_client.get_producer(instance_id, topic_name)
    producer.publish_message(TopicMessage("elsewhere", "TagE"))
    group = group_prefix + "_elsewhere"
    consumer = mq_client.get_consumer(instance_id, topic_name, group, "TagE")
    got = drain(consumer, 1, ack=False)
    expect(len(got) == 1, "nothing consumed")
    # The same group through the other instance, as a program behind a load balancer would.
    other = MQClient(endpoint2, access_id, access_key).get_consumer(instance_id, topic_name, group, "TagE")
    other.ack_message([got[0].receipt_handle])
    time.sleep(invisible_seconds + 1)
    for c in (consumer, other):
        code, _ = server_error(lambda: c.consume_message(1, 1))
        expect(code == "MessageNotExist", "the acked message came back")


def ordered_consume_one_sharding_key():
    producer = mq_client.get_producer(instance_id, order_topic)
    for i in range(20):
        msg = TopicMessage("order %d" % i, "TagO")
        msg.set_sharding_key("shard-1")
        msg.put_property("seq", i)
        producer.publish_message(msg)
    consumer = mq_client.get_consumer(instance_id, order_topic, group_prefix + "_order", "TagO")
    got = drain(consumer, 20, orderly=True)
    seqs = [int(m.get_property("seq")) for m in got]
    expect(seqs == list(range(20)), "order %r" % seqs)
    expect(all(m.get_sharding_key() == "shard-1" for m in got), "sharding key lost")


def timed_delivery():
    producer = mq_client.get_producer(instance_id, timed_topic)
    at = int(time.time() * 1000) + 4000
    msg = TopicMessage("timed", "TagT")
    msg.set_start_deliver_time(at)
    producer.publish_message(msg)
    consumer = mq_client.get_consumer(instance_id, timed_topic, group_prefix + "_timed", "TagT")
    got = drain(consumer, 1, wait_seconds=1, deadline_seconds=30)
    expect(len(got) == 1, "timed message never came")
    now = int(time.time() * 1000)
    expect(now >= at - 200, "delivered %d ms early" % (at - now))
    expect(got[0].get_start_deliver_time() == at, "StartDeliverTime %r" % got[0].get_start_deliver_time())


def transactional_publish_refused():
    producer = mq_client.get_producer(instance_id, topic_name)
    msg = TopicMessage("tx", "TagX")
    msg.set_trans_check_immunity_time(10)
    code, message = server_error(lambda: producer.publish_message(msg))
    expect(code == "InvalidArgument" and "__TransCheckT" in message, "%s: %s" % (code, message))


def missing_topic_is_topic_not_exist():
    producer = mq_client.get_producer(instance_id, missing_topic)
    code, _ = server_error(lambda: producer.publish_message(TopicMessage("x", "TagA")))
    expect(code == "TopicNotExist", code)


def bad_tag_refused():
    producer = mq_client.get_producer(instance_id, topic_name)
    code, _ = server_error(lambda: producer.publish_message(TopicMessage("x", "a||b")))
    expect(code == "InvalidArgument", code)


def wrong_secret_rejected():
    bad = MQClient(endpoint, access_id, access_key + "-wrong")
    code, _ = server_error(lambda: bad.get_producer(instance_id, topic_name).publish_message(TopicMessage("x", "TagA")))
    expect(code == "SignatureDoesNotMatch", code)
    unknown = MQClient(endpoint, access_id + "-unknown", access_key)
    code, _ = server_error(lambda: unknown.get_producer(instance_id, topic_name).publish_message(TopicMessage("x", "TagA")))
    expect(code == "InvalidAccessKeyId", code)


def skewed_date_rejected():
    # The SDK stamps `date` from time.gmtime(); a clock 20 minutes fast.
    real = mq_client_module.time.gmtime
    mq_client_module.time.gmtime = lambda *a: real(time.time() + 20 * 60)
    try:
        code, message = server_error(lambda: mq_client.get_producer(instance_id, topic_name).publish_message(TopicMessage("x", "TagA")))
    finally:
        mq_client_module.time.gmtime = real
    expect(code == "RequestTimeTooSkewed", "%s: %s" % (code, message))


def instance_id_namespaces_publish():
    # The topic exists as {instance}%{topic} only: with the instance id it is found, without not.
    mq_client.get_producer(instance_id, topic_name).publish_message(TopicMessage("ns", "TagN"))
    code, _ = server_error(lambda: mq_client.get_producer("", topic_name).publish_message(TopicMessage("ns", "TagN")))
    expect(code == "TopicNotExist", code)


def instance_id_namespaces_consume():
    consumer = mq_client.get_consumer(instance_id, topic_name, group_prefix + "_ns", "TagN")
    got = drain(consumer, 1)
    expect(len(got) >= 1 and got[0].message_body == "ns", "namespaced message not consumed")


CHECKS = [
    publish_100_with_tags_keys_properties,
    missing_topic_is_topic_not_exist,
    transactional_publish_refused,
    bad_tag_refused,
    wrong_secret_rejected,
    skewed_date_rejected,
    instance_id_namespaces_publish,
    consume_long_poll_tag_filter_ack,
    unacked_message_comes_back_with_new_handle,
    partial_ack_failure,
    ack_through_another_instance,
    ordered_consume_one_sharding_key,
    timed_delivery,
    instance_id_namespaces_consume,
]


def main():
    only = set(sys.argv[1:])
    bad = 0
    for check in CHECKS:
        name = check.__name__
        if only and name not in only:
            continue
        start = time.time()
        try:
            check()
            error = None
        except (CheckFailed, MQExceptionBase) as e:
            error = "%s: %s" % (type(e).__name__, e)
        except Exception:
            error = traceback.format_exc(limit=3).strip().replace("\n", " | ")
        took = time.time() - start
        if name in EXPECTED_TO_FAIL:
            if error is None:
                print("XPASS python %s (%.1fs): passes now, remove it from EXPECTED_TO_FAIL" % (name, took))
                bad += 1
            else:
                print("XFAIL python %s (%.1fs): %s [%s]" % (name, took, EXPECTED_TO_FAIL[name], error[:300]))
        elif error is None:
            print("PASS  python %s (%.1fs)" % (name, took))
        else:
            print("FAIL  python %s (%.1fs): %s" % (name, took, error[:600]))
            bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
