-- wrk script: cycle through the request paths listed in the file $CIU_BENCH_PATHS,
-- send $CIU_BENCH_KEY as X-API-Key when set, and print the summary as one JSON line.
local paths = {}
local i = 0

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
