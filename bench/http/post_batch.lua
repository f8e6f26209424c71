-- wrk: POST a batch of 100 CloudEvents (1 KiB data each) per request (application/cloudevents-batch+json).
local counter = 0
local data = string.rep("y", 1024)
request = function()
  local parts = {}
  for i = 1, 100 do
    counter = counter + 1
    parts[i] = string.format('{"specversion":"1.0","id":"b%d-%d","source":"/bench/batch","type":"bench.click","partitionkey":"c%d","data":"%s"}',
      counter, math.random(1, 1000000000), counter % 1000, data)
  end
  local body = "[" .. table.concat(parts, ",") .. "]"
  return wrk.format("POST", nil, {["Content-Type"] = "application/cloudevents-batch+json"}, body)
end
done = function(summary, latency, requests)
  -- MB/s of event data posted (100 x 1 KiB per request), not of the small responses
  io.write(string.format("RESULT batches_per_s=%.0f events_per_s=%.0f data_mb_per_s=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests / (summary.duration / 1e6), 100 * summary.requests / (summary.duration / 1e6),
    100 * 1024 * summary.requests / 1e6 / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
