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
