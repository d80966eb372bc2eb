-- One wrk run of the benchmark (bench/run.py writes the job file and reads the last line).
-- Arguments after `--`: <job file> <threads> <expected status> [<Location pattern>].
-- A job file line is: method TAB path TAB cookie TAB body (body empty for a GET).
-- Thread t takes lines t, t+T, t+2T, ...; each request takes its thread's next line.
-- A response counts as bad unless its status is the expected one and, if a pattern is
-- given, its Location matches it (a redirect to the session-expired page is no success).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests_ = {}
local next_ = 1
local expected = 200
local pattern = nil
used = 0
wrapped = 0
bad = 0

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    table.insert(fields, field)
  end
  return fields
end

function init(args)
  local n = tonumber(args[2])
  expected = tonumber(args[3])
  pattern = args[4]
  local index = 0
  local lines = {}
  for line in io.lines(args[1]) do
    table.insert(lines, line)
  end
  -- Fewer lines than threads (one /hello for all): every thread takes them all.
  local mine = #lines >= n
  for _, line in ipairs(lines) do
    if not mine or index % n == id then
      local f = split(line)
      local headers = {}
      if f[3] ~= "" then
        headers["Cookie"] = f[3]
      end
      local body = nil
      if f[4] ~= nil and f[4] ~= "" then
        body = f[4]
        headers["Content-Type"] = "application/x-www-form-urlencoded"
      end
      table.insert(requests_, wrk.format(f[1], f[2], headers, body))
    end
    index = index + 1
  end
end

function request()
  if next_ > #requests_ then
    next_ = 1
    wrapped = wrapped + 1
  end
  local r = requests_[next_]
  next_ = next_ + 1
  used = used + 1
  return r
end

function response(status, headers, body)
  if status ~= expected then
    bad = bad + 1
  elseif pattern ~= nil then
    local location = headers["location"] or headers["Location"] or ""
    if not string.find(location, pattern) then
      bad = bad + 1
    end
  end
end

function done(summary, latency, requests)
  local per_thread = {}
  local bad_total, wrapped_total = 0, 0
  for _, thread in ipairs(threads) do
    table.insert(per_thread, string.format("%d", thread:get("used")))
    bad_total = bad_total + thread:get("bad")
    wrapped_total = wrapped_total + thread:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bad": %d, "wrapped": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "used": [%s]}\n',
    summary.requests, summary.duration, bad_total, wrapped_total,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    table.concat(per_thread, ", ")))
end
