-- wrk: POST one binary-mode CloudEvent per request (1 KiB data), a unique ce-id each time.
local counter = 0
local data = string.rep("x", 1024)
request = function()
  counter = counter + 1
  local headers = {
    ["ce-specversion"] = "1.0",
    ["ce-id"] = tostring(counter) .. "-" .. tostring(math.random(1, 1000000000)),
    ["ce-source"] = "/bench/wrk",
    ["ce-type"] = "bench.click",
    ["ce-partitionkey"] = "customer-" .. tostring(counter % 1000),
    ["Content-Type"] = "application/octet-stream",
  }
  return wrk.format("POST", nil, headers, data)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT events_per_s=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
