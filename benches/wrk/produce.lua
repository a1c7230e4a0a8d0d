-- wrk script for benches/benches/gateway.rs: POST /mq/produce with a form body
-- `producer=NAME&message=<SIZE bytes>`, counting responses whose body is not MQ-Proxy's
-- `"status":200` envelope (the gateway answers HTTP 200 either way), and printing one
-- machine-readable summary line that the benchmark parses.
--
--   wrk -t2 -c64 -d10s --latency -s benches/wrk/produce.lua http://127.0.0.1:PORT/mq/produce -- NAME 1024
--
-- With `-- --floor` it GETs the URL instead (the benchmark's GET /health: what an HTTP request
-- costs the gateway with no work behind it), counting answers that are not HTTP 200.
--
--   wrk -t2 -c64 -d10s --latency -s benches/wrk/produce.lua http://127.0.0.1:PORT/health -- --floor

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   bad = 0
   sample = ""
   if args[1] == "--floor" then
      floor = true
      wrk.method = "GET"
      return
   end
   local producer = args[1] or error("usage: -- PRODUCER [SIZE] | -- --floor")
   local size = tonumber(args[2] or "1024")
   bad = 0
   sample = ""
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
   wrk.body = "producer=" .. producer .. "&message=" .. string.rep("x", size)
end

function response(status, headers, body)
   if status ~= 200 or (not floor and not string.find(body, '"status":200', 1, true)) then
      bad = bad + 1
      if sample == "" then
         sample = tostring(status) .. " " .. string.sub(body, 1, 300)
      end
   end
end

function done(summary, latency, requests)
   local bad_total, sample_any = 0, ""
   for _, t in ipairs(threads) do
      bad_total = bad_total + t:get("bad")
      local s = t:get("sample")
      if sample_any == "" and s ~= nil and s ~= "" then
         sample_any = s
      end
   end
   local e = summary.errors
   io.write(string.format(
      "RMQ_BENCH requests=%d duration_us=%d bad=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d max_us=%d\n",
      summary.requests, summary.duration, bad_total, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
   if sample_any ~= "" then
      io.write("RMQ_BENCH_BAD_SAMPLE " .. string.gsub(sample_any, "\n", " ") .. "\n")
   end
end
