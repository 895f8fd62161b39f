-- wrk script of scripts/bench (a superset of the shared harness's wrk.lua):
-- one request shape per run, taken from the environment, and one summary
-- line when the run ends:
--   mode requests_per_sec p50_ms p99_ms non2xx requests
--
-- BENCH_MODE          the label printed
-- BENCH_METHOD        GET (default) or POST
-- BENCH_BODY          request body (POST), with BENCH_CONTENT_TYPE
-- BENCH_HEADER_NAME   one extra header (Cookie, Authorization), empty for none
-- BENCH_HEADER_VALUE  its value
-- BENCH_POOL_FILE     a file of header values, one a line: request i carries
--                     line (start + i) mod n, so that every request of a run
--                     presents another credential (bearer-pool). Requests are
--                     formatted once, up front, to keep wrk's own cost flat.
--
-- non2xx = responses with status >= 400 plus socket errors (connect, read,
-- write, timeout): every request that did not succeed.

local method = os.getenv("BENCH_METHOD") or "GET"
if method == "" then method = "GET" end
local body = os.getenv("BENCH_BODY")
if body == "" then body = nil end
local name = os.getenv("BENCH_HEADER_NAME") or ""
local value = os.getenv("BENCH_HEADER_VALUE") or ""
local ctype = os.getenv("BENCH_CONTENT_TYPE") or ""
local pool_file = os.getenv("BENCH_POOL_FILE") or ""

wrk.method = method
wrk.body = body
if ctype ~= "" then wrk.headers["Content-Type"] = ctype end
if name ~= "" and pool_file == "" then wrk.headers[name] = value end

local pool = nil
local next_i = 1

if pool_file ~= "" then
  -- Formatted in init, after wrk has set the Host header.
  function init(args)
    pool = {}
    for line in io.lines(pool_file) do
      if line ~= "" then
        local headers = {}
        for k, v in pairs(wrk.headers) do headers[k] = v end
        headers[name] = line
        pool[#pool + 1] = wrk.format(method, nil, headers, body)
      end
    end
    assert(#pool > 0, "BENCH_POOL_FILE holds no line")
    math.randomseed(os.time())
    next_i = math.random(#pool)
  end

  function request()
    local r = pool[next_i]
    next_i = next_i % #pool + 1
    return r
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local failed = e.status + e.connect + e.read + e.write + e.timeout
  local seconds = summary.duration / 1e6
  io.write(string.format("%s %.0f %.3f %.3f %d %d\n",
    os.getenv("BENCH_MODE") or "run",
    summary.requests / seconds,
    latency:percentile(50) / 1000,  -- wrk reports microseconds
    latency:percentile(99) / 1000,
    failed,
    summary.requests))
end
