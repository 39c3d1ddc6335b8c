-- report.lua: wrk script whose done() prints one machine-readable "BENCH ..." line that bench/run parses
-- (requests, req/s, p50/p99 latency, wrk's error counters). On its own it sends wrk's plain requests
-- (origin form, the URL's path; the reverse-proxy workload); absolute.lua loads it for the forward proxy.

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
