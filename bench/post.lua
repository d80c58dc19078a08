-- wrk script: POST the JSON file named by the first argument; optional second argument stops each
-- thread after that many responses (and prints WRK_LIMIT_REACHED). Prints one line "WRK_JSON {...}" with the
-- results (latencies in us).
local limit = 0
local seen = 0

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  limit = tonumber(args[2] or "0") or 0
  if limit > 0 then
    response = function(status, headers, body)
      seen = seen + 1
      if seen == limit then
        wrk.thread:stop()
        -- wrk's main thread sleeps out -d regardless: bench/loadgen.py wakes it with SIGINT on this line.
        io.write("WRK_LIMIT_REACHED\n")
        io.flush()
      end
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  -- The latency distribution at every 0.1 % (999 quantiles), so that interleaved slices of one point can be
  -- merged into one distribution (bench/loadgen.py: merge).
  local q = {}
  for i = 1, 999 do
    q[i] = string.format("%d", latency:percentile(i / 10))
  end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d},' ..
    '"quantiles_us":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    table.concat(q, ",")))
end
