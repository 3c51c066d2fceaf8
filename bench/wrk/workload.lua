-- wrk script for the dmp workloads (bench/load.py writes the request file and passes it).
--
-- wrk -s bench/wrk/workload.lua URL -- REQUESTS_FILE KIND=WEIGHT [KIND=WEIGHT...]
--
-- Each line of REQUESTS_FILE is: KIND <tab> METHOD <tab> PATH <tab> TOKEN <tab> BODY
-- (BODY may be empty). In a body, __UID__ is replaced by a number unique to the request, so
-- every publication carries a new document uniqueId. Each request picks a kind by weight, then
-- a random line of that kind. done() prints one JSON line the runner reads.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

local kinds, weights, lines = {}, {}, {}
local total_weight = 0

function init(args)
  local file = args[1]
  for i = 2, #args do
    local kind, weight = string.match(args[i], "^([^=]+)=(%d+)$")
    table.insert(kinds, kind)
    table.insert(weights, tonumber(weight))
    total_weight = total_weight + tonumber(weight)
    lines[kind] = {}
  end
  for line in io.lines(file) do
    local kind, method, path, token, body = string.match(line, "^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    if kind and lines[kind] then
      table.insert(lines[kind], {method, path, token, body})
    end
  end
  for _, kind in ipairs(kinds) do
    if #lines[kind] == 0 then
      error("no request of kind " .. kind .. " in " .. file)
    end
  end
  math.randomseed(os.time() * 1000 + (thread_id or 0))
  nonce = tostring(os.time()) .. string.format("%02d", thread_id or 0)
end

function request()
  local r = math.random(total_weight)
  local kind = kinds[#kinds]
  for i, k in ipairs(kinds) do
    if r <= weights[i] then
      kind = k
      break
    end
    r = r - weights[i]
  end
  local pick = lines[kind][math.random(#lines[kind])]
  local headers = {["Authorization"] = "Bearer " .. pick[3], ["Accept"] = "application/fhir+json"}
  local body = nil
  if pick[4] ~= "" then
    counter = counter + 1
    local uid = nonce .. string.format("%09d", counter)
    body = string.gsub(pick[4], "__UID__", uid)
    headers["Content-Type"] = "application/fhir+json"
  end
  return wrk.format(pick[1], pick[2], headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nRESULT {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p95": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean))
end
