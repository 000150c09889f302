-- wrk script: cycle through requests listed in a file, one "path<TAB>bearer credential" per line.
-- Usage: wrk ... -s requests.lua URL -- FILE
-- `done` prints one JSON line that bench/common.py reads (latencies in microseconds).

local paths = {}
local auths = {}
local count = 0
local index = 0

function init(args)
  for line in io.lines(args[1]) do
    local path, credential = line:match("^([^\t]+)\t(.*)$")
    count = count + 1
    paths[count] = path
    auths[count] = "Bearer " .. credential
  end
  -- Each thread starts somewhere else in the list.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  index = math.random(count)
end

function request()
  index = index % count + 1
  return wrk.format("GET", paths[index], { ["Authorization"] = auths[index] })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
