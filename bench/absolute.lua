-- absolute.lua: wrk script for forward-proxy benchmarks.
-- wrk connects to the proxy given on its command line; every request carries the origin's
-- absolute-form URL (RFC 9112 §3.2.2), taken from BENCH_ORIGIN_URL, e.g. http://127.0.0.1:8080/1k.
-- done() comes from report.lua (next to this file): one machine-readable "BENCH ..." line.

local url = os.getenv("BENCH_ORIGIN_URL")
if url == nil or url == "" then
  error("absolute.lua: set BENCH_ORIGIN_URL to the origin's absolute URL")
end

wrk.method = "GET"
wrk.path = url
wrk.headers["Host"] = url:match("^%a+://([^/]+)")

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")
