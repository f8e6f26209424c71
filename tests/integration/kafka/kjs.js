// kafkajs driver for the Python tests: node kjs.js SPEC.json RESULT.json
// SPEC = {brokers: ["127.0.0.1:PORT"], steps: [{op, ...}, ...]}; every step's result goes, in order,
// into RESULT = {results: [...]}, or {error: {...}, results: [...]} when a step threw.
// Record payloads travel base64-encoded so binary keys, values and headers survive the trip.
'use strict'
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const fs = require('fs')
const { Kafka, CompressionTypes, logLevel } = require('kafkajs')

const b64 = s => (s === null || s === undefined ? null : Buffer.from(s, 'base64'))

function toMessage(r) {
  const m = { key: b64(r.k), value: b64(r.v) }
  if (r.ts !== undefined && r.ts !== null) m.timestamp = String(r.ts)
  if (r.p !== undefined && r.p !== null) m.partition = r.p
  if (r.h) {
    m.headers = {}
    for (const [name, value] of r.h) {
      const v = b64(value)
      if (name in m.headers) {
        m.headers[name] = [].concat(m.headers[name], [v])
      } else {
        m.headers[name] = v
      }
    }
  }
  return m
}

const codec = name => {
  if (!name || name === 'none') return CompressionTypes.None
  if (name === 'gzip') return CompressionTypes.GZIP
  throw new Error('kafkajs has no built-in codec ' + name)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const toB64 = b => (b === null || b === undefined ? null : Buffer.from(b).toString('base64'))

// One consumer-group member, run for a bounded time. Every event goes at once (writeSync, so it
// survives SIGKILL) to step.outFile as a JSON line with a wall-clock "t" (ms):
//   {ev: 'ready'} {ev: 'assign', parts, member} {ev: 'rec', p, o, k, v} {ev: 'commit', offsets}
//   {ev: 'done', reason}
// step: groupId, topic, outFile, durationMs (hard limit), sessionTimeout, heartbeatInterval,
//   rebalanceTimeout, readyFile/goFile (start barrier: connect, write readyFile, wait for goFile
//   before subscribing), stopFile (leave when it exists), commit: 'none' | 'each' (autoCommit
//   every 200 ms) | 'at' (process exactly commitAt records, commit them synchronously, leave),
//   expect/idleMs (leave once expect records came and none for idleMs).
// Returns {count, memberId, assignments: [{t, parts}], reason, records: [{p, o, k, v}]}.
async function groupConsume(kafka, step) {
  const fd = fs.openSync(step.outFile, 'a')
  const emit = o => fs.writeSync(fd, JSON.stringify(Object.assign({ t: Date.now() }, o)) + '\n')
  const deadline = Date.now() + (step.durationMs || 60000)
  const commit = step.commit || 'none'
  const consumer = kafka.consumer({
    groupId: step.groupId,
    sessionTimeout: step.sessionTimeout || 30000,
    rebalanceTimeout: step.rebalanceTimeout || 60000,
    heartbeatInterval: step.heartbeatInterval || 3000,
    maxWaitTimeInMs: step.maxWaitTimeInMs || 200,
    allowAutoTopicCreation: false,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  let count = 0
  const records = []
  let memberId = null
  let lastRecordAt = Date.now()
  const assignments = []
  const next = {} // partition -> offset after the last processed record
  consumer.on(consumer.events.GROUP_JOIN, e => {
    const a = e.payload.memberAssignment || {}
    const parts = (a[step.topic] || []).map(Number).sort((x, y) => x - y)
    memberId = e.payload.memberId
    assignments.push({ t: Date.now(), parts })
    emit({ ev: 'assign', parts, member: memberId })
  })
  await consumer.connect()
  emit({ ev: 'ready' })
  if (step.readyFile) fs.writeFileSync(step.readyFile, 'ready')
  if (step.goFile) {
    while (!fs.existsSync(step.goFile)) {
      if (Date.now() > deadline) throw new Error('no go file before the deadline')
      await sleep(5)
    }
  }
  await consumer.subscribe({ topics: [step.topic], fromBeginning: true })
  const atLimit = () => commit === 'at' && count >= step.commitAt
  await consumer.run({
    autoCommit: commit === 'each',
    autoCommitInterval: commit === 'each' ? 200 : null,
    eachMessage: async ({ partition, message }) => {
      if (atLimit()) return // past the known point: not processed (and not committed)
      count++
      lastRecordAt = Date.now()
      next[partition] = Number(message.offset) + 1
      const rec = { p: partition, o: Number(message.offset), k: toB64(message.key),
        v: toB64(message.value) }
      records.push(rec)
      emit(Object.assign({ ev: 'rec' }, rec))
    },
  })
  let reason = 'deadline'
  for (;;) {
    if (Date.now() > deadline) break
    if (step.stopFile && fs.existsSync(step.stopFile)) { reason = 'stop'; break }
    if (atLimit()) { reason = 'commitAt'; break }
    if (step.expect !== undefined && step.expect !== null && count >= step.expect &&
        Date.now() - lastRecordAt >= (step.idleMs || 1000)) { reason = 'expect'; break }
    await sleep(20)
  }
  if (commit === 'at') {
    const offsets = Object.keys(next).map(p => ({
      topic: step.topic, partition: Number(p), offset: String(next[p]),
    }))
    await consumer.commitOffsets(offsets)
    const o = {}
    for (const p of Object.keys(next)) o[p] = next[p]
    emit({ ev: 'commit', offsets: o })
  }
  await consumer.disconnect()
  emit({ ev: 'done', reason })
  fs.closeSync(fd)
  return { count, memberId, assignments, reason, records }
}

async function main() {
  const [specPath, resultPath] = process.argv.slice(2)
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'))
  const kafka = new Kafka({
    clientId: 'factlog-kjs-test',
    brokers: spec.brokers,
    logLevel: logLevel.ERROR,
    connectionTimeout: 5000,
    requestTimeout: 20000,
    retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 2000 },
  })
  const admin = kafka.admin()
  await admin.connect()
  let producer = null
  const results = []
  const out = { results }
  try {
    for (const step of spec.steps) {
      switch (step.op) {
        case 'createTopics': {
          const created = await admin.createTopics({
            waitForLeaders: true,
            timeout: 10000,
            topics: step.topics.map(t => ({
              topic: t.topic,
              numPartitions: t.partitions,
              replicationFactor: 1,
            })),
          })
          results.push({ created })
          break
        }
        case 'listTopics':
          results.push({ topics: await admin.listTopics() })
          break
        case 'fetchTopicMetadata': {
          const md = await admin.fetchTopicMetadata({ topics: step.topics })
          results.push({
            topics: md.topics.map(t => ({
              name: t.name,
              partitions: t.partitions.map(p => ({
                partition: p.partitionId,
                leader: p.leader,
                errorCode: p.partitionErrorCode,
              })),
            })),
          })
          break
        }
        case 'fetchTopicOffsets':
          results.push({ offsets: await admin.fetchTopicOffsets(step.topic) })
          break
        case 'fetchTopicOffsetsByTimestamp': {
          const byTs = {}
          for (const ts of step.timestamps) {
            byTs[String(ts)] = await admin.fetchTopicOffsetsByTimestamp(step.topic, ts)
          }
          results.push({ byTimestamp: byTs })
          break
        }
        case 'deleteTopics':
          await admin.deleteTopics({ topics: step.topics, timeout: 10000 })
          results.push({ deleted: step.topics })
          break
        case 'produce': {
          if (!producer) {
            producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false })
            await producer.connect()
          }
          const chunk = step.chunk || 500
          const metadata = []
          for (let i = 0; i < step.records.length; i += chunk) {
            const messages = step.records.slice(i, i + chunk).map(toMessage)
            const md = await producer.send({
              topic: step.topic,
              acks: step.acks === undefined ? -1 : step.acks,
              timeout: 15000,
              compression: codec(step.compression),
              messages,
            })
            for (const m of md) {
              metadata.push({
                partition: m.partition,
                errorCode: m.errorCode,
                baseOffset: m.baseOffset,
              })
            }
          }
          results.push({ sent: step.records.length, metadata })
          break
        }
        case 'groupConsume':
          results.push(await groupConsume(kafka, step))
          break
        default:
          throw new Error('unknown op ' + step.op)
      }
    }
  } catch (e) {
    out.error = {
      name: e.name,
      message: e.message,
      type: e.type,
      code: e.code,
      stack: e.stack,
    }
  } finally {
    if (producer) await producer.disconnect().catch(() => {})
    await admin.disconnect().catch(() => {})
  }
  fs.writeFileSync(resultPath, JSON.stringify(out))
}

main().catch(e => {
  console.error(e && e.stack ? e.stack : e)
  process.exit(2)
})
