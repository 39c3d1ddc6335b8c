-- absolute.lua: wrk script for forward-proxy benchmarks.
-- wrk connects to the proxy given on its command line; every request carries the origin's
-- absolute-form URL (RFC 9112 §3.2.2), taken from BENCH_ORIGIN_URL, e.g. http://127.0.0.1:8080/1k.
-- done() prints one machine-readable "BENCH ..." line that bench/run parses.

local url = os.getenv("BENCH_ORIGIN_URL")
if url == nil or url == "" then
  error("absolute.lua: set BENCH_ORIGIN_URL to the origin's absolute URL")
end

wrk.method = "GET"
wrk.path = url
wrk.headers["Host"] = url:match("^%a+://([^/]+)")

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.2f p50_us=%d p99_us=%d "
      .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, secs > 0 and summary.requests / secs or 0,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
