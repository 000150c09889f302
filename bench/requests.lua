-- wrk script: cycle through requests listed in a file, one "path<TAB>bearer credential" per line, every
-- line padded with spaces to the same length (bench/phases.py `write_requests`).
-- Usage: wrk ... -s requests.lua URL -- FILE
-- `done` prints one JSON line that bench/common.py reads (latencies in microseconds).
--
-- The file is read whole into one string and a request's line is cut out of it by its offset, so that
-- loading takes the same (short) time at any size. wrk runs `init` of each thread in turn and starts a
-- thread as soon as its `init` is done, before the clock of the run starts. Splitting 1,000,000 lines
-- into tables took seconds per thread, and the requests the first thread sent meanwhile were counted
-- while the clock was not running: the throughput at the large sizes came out inflated.

local data = ""
local width = 0 -- bytes per line, with its newline
local count = 0
local index = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  data = file:read("*a")
  file:close()
  width = assert(data:find("\n", 1, true), "empty request list")
  assert(#data % width == 0, "request list lines must all be the same length")
  count = #data / width
  -- Each thread starts somewhere else in the list.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  index = math.random(count)
end

function request()
  index = index % count + 1
  local at = (index - 1) * width
  local path, credential = data:sub(at + 1, at + width - 1):match("^([^\t]+)\t(%S+)")
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. credential })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
