// The official Aliyun MQ HTTP Node SDK (@aliyunmq/mq-http-sdk 1.0.4) against rmq-gateway.
//
// Written the way the SDK's samples are: an MQClient from endpoint and AccessKey pair, producers
// and consumers from an instance id and topic. Only the endpoint, keys, instance id and names come
// from the environment (tests/sdk/run.sh sets them; see ../python/sdk_checks.py for the list).
//
// Prints one line per check and exits non-zero when a check fails that is not listed in
// EXPECTED_TO_FAIL, or when a listed one passes (then the list is out of date).
'use strict';

const crypto = require('crypto');
const { MQClient, MessageProperties } = require('@aliyunmq/mq-http-sdk');

// Checks known to fail, with the reason (none at present).
const EXPECTED_TO_FAIL = {};

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const endpoint = env('MQ_ENDPOINT');
const accessKeyId = env('MQ_ACCESS_KEY_ID');
const accessKeySecret = env('MQ_ACCESS_KEY_SECRET');
const instanceId = env('MQ_INSTANCE_ID');
const topic = env('MQ_TOPIC');
const orderTopic = env('MQ_ORDER_TOPIC');
const timedTopic = env('MQ_TIMED_TOPIC');
const missingTopic = env('MQ_MISSING_TOPIC');
const groupPrefix = env('MQ_GROUP_PREFIX');
const invisibleSeconds = parseInt(process.env.MQ_INVISIBLE_SECONDS || '5', 10);
// A second gateway instance in front of the same broker.
const endpoint2 = env('MQ_ENDPOINT_2');

const client = new MQClient(endpoint, accessKeyId, accessKeySecret);

class CheckFailed extends Error {}
const expect = (cond, what) => {
  if (!cond) throw new CheckFailed(what);
};
const md5Upper = (s) => crypto.createHash('md5').update(s, 'utf8').digest('hex').toUpperCase();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Runs fn, which must fail with an MQ server error; returns its Code.
async function serverError(fn) {
  try {
    await fn();
  } catch (e) {
    if (e.Code) return e.Code;
    throw e;
  }
  throw new CheckFailed('the call succeeded but should have failed');
}

async function drain(consumer, want, { waitSeconds = 3, deadlineSeconds = 60, ack = true, orderly = false } = {}) {
  const got = [];
  const end = Date.now() + deadlineSeconds * 1000;
  while (got.length < want && Date.now() < end) {
    let res;
    try {
      res = orderly ? await consumer.consumeMessageOrderly(16, waitSeconds) : await consumer.consumeMessage(16, waitSeconds);
    } catch (e) {
      if (e.Code === 'MessageNotExist') continue;
      throw e;
    }
    got.push(...res.body);
    if (ack) {
      const r = await consumer.ackMessage(res.body.map((m) => m.ReceiptHandle));
      expect(r.code === 204, `ack answered ${r.code}`);
    }
  }
  return got;
}

const body = (i) => `node message ${i} <&> 中文`;

const checks = {
  async publish_100_with_tags_keys_properties() {
    const producer = client.getProducer(instanceId, topic);
    for (let i = 0; i < 100; i++) {
      const msgProps = new MessageProperties();
      msgProps.putProperty('a', i);
      msgProps.putProperty('run', groupPrefix);
      msgProps.messageKey(`key-${i}`);
      const res = await producer.publishMessage(body(i), i % 2 === 0 ? 'TagA' : 'TagB', msgProps);
      expect(res.code === 201, `status ${res.code}`);
      expect(res.body.MessageId, 'no MessageId');
      expect(res.body.MessageBodyMD5 === md5Upper(body(i)), `MessageBodyMD5 ${res.body.MessageBodyMD5}`);
      expect(res.requestId, 'no x-mq-request-id');
    }
  },

  async missing_topic_is_topic_not_exist() {
    const code = await serverError(() => client.getProducer(instanceId, missingTopic).publishMessage('x', 'TagA'));
    expect(code === 'TopicNotExist', code);
  },

  async transactional_publish_refused() {
    const msgProps = new MessageProperties();
    msgProps.transCheckImmunityTime(10);
    const code = await serverError(() => client.getProducer(instanceId, topic).publishMessage('tx', 'TagX', msgProps));
    expect(code === 'InvalidArgument', code);
  },

  async bad_tag_refused() {
    const code = await serverError(() => client.getProducer(instanceId, topic).publishMessage('x', 't'.repeat(65)));
    expect(code === 'InvalidArgument', code);
  },

  async wrong_secret_rejected() {
    const bad = new MQClient(endpoint, accessKeyId, accessKeySecret + '-wrong');
    let code = await serverError(() => bad.getProducer(instanceId, topic).publishMessage('x', 'TagA'));
    expect(code === 'SignatureDoesNotMatch', code);
    const unknown = new MQClient(endpoint, accessKeyId + '-unknown', accessKeySecret);
    code = await serverError(() => unknown.getProducer(instanceId, topic).publishMessage('x', 'TagA'));
    expect(code === 'InvalidAccessKeyId', code);
  },

  async skewed_date_rejected() {
    // The SDK stamps `date` with new Date().toGMTString(); a clock 20 minutes slow.
    const real = Date.prototype.toGMTString;
    Date.prototype.toGMTString = function () {
      return new Date(this.getTime() - 20 * 60 * 1000).toUTCString();
    };
    let code;
    try {
      code = await serverError(() => client.getProducer(instanceId, topic).publishMessage('x', 'TagA'));
    } finally {
      Date.prototype.toGMTString = real;
    }
    expect(code === 'RequestTimeTooSkewed', code);
  },

  async instance_id_namespaces_publish() {
    // The topic exists as {instance}%{topic} only: with the instance id it is found, without not.
    await client.getProducer(instanceId, topic).publishMessage('ns', 'TagN');
    const code = await serverError(() => client.getProducer('', topic).publishMessage('ns', 'TagN'));
    expect(code === 'TopicNotExist', code);
  },

  async consume_long_poll_tag_filter_ack() {
    const consumer = client.getConsumer(instanceId, topic, `${groupPrefix}_tags`, 'TagA');
    const got = await drain(consumer, 50);
    expect(got.length === 50, `consumed ${got.length} TagA messages, want 50`);
    for (const m of got) {
      expect(m.MessageTag === 'TagA', `tag filter let ${m.MessageTag} through`);
      const i = parseInt(m.Properties.a, 10);
      expect(m.MessageBody === body(i), `body ${m.MessageBody}`);
      expect(m.MessageKey === `key-${i}`, `key ${m.MessageKey}`);
      expect(m.MessageBodyMD5 === md5Upper(m.MessageBody), 'md5');
    }
    const start = Date.now();
    const code = await serverError(() => consumer.consumeMessage(16, 3));
    expect(code === 'MessageNotExist', `after acking all: ${code}`);
    expect(Date.now() - start >= 2500, `the long poll returned after ${Date.now() - start} ms`);
    const late = sleep(1000).then(() => client.getProducer(instanceId, topic).publishMessage('late', 'TagA'));
    const t0 = Date.now();
    const res = await consumer.consumeMessage(1, 10);
    await late;
    expect(res.body[0].MessageBody === 'late', 'long poll got another message');
    expect(Date.now() - t0 < 5000, `long poll took ${Date.now() - t0} ms`);
    await consumer.ackMessage(res.body.map((m) => m.ReceiptHandle));
  },

  async unacked_message_comes_back_with_new_handle() {
    await client.getProducer(instanceId, topic).publishMessage('redeliver me', 'TagR');
    const consumer = client.getConsumer(instanceId, topic, `${groupPrefix}_redeliver`, 'TagR');
    const first = await drain(consumer, 1, { ack: false });
    expect(first.length === 1, 'first delivery missing');
    await sleep((invisibleSeconds + 1) * 1000);
    const second = await drain(consumer, 1, { ack: false });
    expect(second.length === 1, 'not delivered again');
    expect(second[0].MessageId === first[0].MessageId, 'another message came');
    expect(second[0].ReceiptHandle !== first[0].ReceiptHandle, 'same receipt handle');
    expect(Number(second[0].ConsumedTimes) === 2, `ConsumedTimes ${second[0].ConsumedTimes}`);
    const r = await consumer.ackMessage([second[0].ReceiptHandle]);
    expect(r.code === 204, `ack answered ${r.code}`);
  },

  async partial_ack_failure() {
    await client.getProducer(instanceId, topic).publishMessage('partial', 'TagP');
    const consumer = client.getConsumer(instanceId, topic, `${groupPrefix}_partial`, 'TagP');
    const got = await drain(consumer, 1, { ack: false });
    expect(got.length === 1, 'nothing consumed');
    const r = await consumer.ackMessage([got[0].ReceiptHandle, 'not-a-handle']);
    expect(r.code === 404, `partial ack answered ${r.code}`);
    expect(r.body.length === 1 && r.body[0].ReceiptHandle === 'not-a-handle', JSON.stringify(r.body));
    expect(r.body[0].ErrorCode === 'ReceiptHandleError', JSON.stringify(r.body));
    await sleep((invisibleSeconds + 1) * 1000);
    const code = await serverError(() => consumer.consumeMessage(1, 1));
    expect(code === 'MessageNotExist', 'the acked message came back');
  },

  async ordered_consume_one_sharding_key() {
    const producer = client.getProducer(instanceId, orderTopic);
    for (let i = 0; i < 20; i++) {
      const msgProps = new MessageProperties();
      msgProps.shardingKey('shard-1');
      msgProps.putProperty('seq', i);
      await producer.publishMessage(`order ${i}`, 'TagO', msgProps);
    }
    const consumer = client.getConsumer(instanceId, orderTopic, `${groupPrefix}_order`, 'TagO');
    const got = await drain(consumer, 20, { orderly: true });
    const seqs = got.map((m) => parseInt(m.Properties.seq, 10));
    expect(JSON.stringify(seqs) === JSON.stringify([...Array(20).keys()]), `order ${seqs}`);
    expect(got.every((m) => m.ShardingKey === 'shard-1'), 'sharding key lost');
  },

  async timed_delivery() {
    const at = Date.now() + 4000;
    const msgProps = new MessageProperties();
    msgProps.startDeliverTime(at);
    await client.getProducer(instanceId, timedTopic).publishMessage('timed', 'TagT', msgProps);
    const consumer = client.getConsumer(instanceId, timedTopic, `${groupPrefix}_timed`, 'TagT');
    const got = await drain(consumer, 1, { waitSeconds: 1, deadlineSeconds: 30 });
    expect(got.length === 1, 'timed message never came');
    expect(Date.now() >= at - 200, `delivered ${at - Date.now()} ms early`);
    expect(Number(got[0].StartDeliverTime) === at, `StartDeliverTime ${got[0].StartDeliverTime}`);
  },

  async ack_through_another_instance() {
    await client.getProducer(instanceId, topic).publishMessage('elsewhere', 'TagE');
    const consumer = client.getConsumer(instanceId, topic, `${groupPrefix}_elsewhere`, 'TagE');
    const got = await drain(consumer, 1, { ack: false });
    expect(got.length === 1, 'nothing consumed');
    // The same group through the other instance, as a program behind a load balancer would.
    const other = new MQClient(endpoint2, accessKeyId, accessKeySecret)
      .getConsumer(instanceId, topic, `${groupPrefix}_elsewhere`, 'TagE');
    const r = await other.ackMessage([got[0].ReceiptHandle]);
    expect(r.code === 204, `ack through the other instance answered ${r.code} ${JSON.stringify(r.body)}`);
    await sleep((invisibleSeconds + 1) * 1000);
    for (const c of [consumer, other]) {
      const code = await serverError(() => c.consumeMessage(1, 1));
      expect(code === 'MessageNotExist', 'the acked message came back');
    }
  },

  async instance_id_namespaces_consume() {
    const consumer = client.getConsumer(instanceId, topic, `${groupPrefix}_ns`, 'TagN');
    const got = await drain(consumer, 1);
    expect(got.length >= 1 && got[0].MessageBody === 'ns', 'namespaced message not consumed');
  },
};

async function main() {
  const only = new Set(process.argv.slice(2));
  let bad = 0;
  for (const [name, check] of Object.entries(checks)) {
    if (only.size && !only.has(name)) continue;
    const start = Date.now();
    let error = null;
    try {
      await check();
    } catch (e) {
      error = `${e.constructor.name}: ${e.message}`;
    }
    const took = ((Date.now() - start) / 1000).toFixed(1);
    if (name in EXPECTED_TO_FAIL) {
      if (error === null) {
        console.log(`XPASS node   ${name} (${took}s): passes now, remove it from EXPECTED_TO_FAIL`);
        bad++;
      } else {
        console.log(`XFAIL node   ${name} (${took}s): ${EXPECTED_TO_FAIL[name]} [${error.slice(0, 300)}]`);
      }
    } else if (error === null) {
      console.log(`PASS  node   ${name} (${took}s)`);
    } else {
      console.log(`FAIL  node   ${name} (${took}s): ${error.slice(0, 600)}`);
      bad++;
    }
  }
  process.exit(bad ? 1 : 0);
}

main();
