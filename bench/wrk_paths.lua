-- wrk script: cycle through the request paths listed in the file $CIU_BENCH_PATHS,
-- send $CIU_BENCH_KEY as X-API-Key when set, and print the summary as one JSON line.
--
-- With $CIU_BENCH_RATE (requests per second) the requests are paced: each one
-- takes the next free slot of a fixed schedule, and a connection waits for its
-- slot before sending, so the server sees that rate (an open loop) however fast
-- it answers. Slots nobody could take because every connection was waiting for
-- an answer are dropped, so the achieved rate shows when the server fell behind.
local paths = {}
local i = 0
local rate = tonumber(os.getenv("CIU_BENCH_RATE") or "")
local ffi, now_ms, next_slot
if rate then
  ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } ciu_timespec;
    int clock_gettime(int clk_id, ciu_timespec *tp);
  ]]
  local ts = ffi.new("ciu_timespec")
  now_ms = function()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
end

function delay()
  if not rate then return 0 end
  local now = now_ms()
  local slot = math.max(next_slot or now, now)
  next_slot = slot + 1000 / rate
  return math.floor(slot - now + 0.5)
end

function init(args)
  for line in io.lines(os.getenv("CIU_BENCH_PATHS")) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  local key = os.getenv("CIU_BENCH_KEY")
  if key and #key > 0 then wrk.headers["X-API-Key"] = key end
  i = math.random(#paths)
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
