-- wrk script: every request carries a token no request has carried before.
--   wrk -tT ... -s bench/fresh.lua URL -- TOKENFILE T
-- Thread k of T takes lines k+1, k+1+T, k+1+2T, ... so threads never share a
-- token. Past the end a thread starts over; done() prints how many requests
-- reused a token (make the file bigger when that is not 0).
local tokens = {}
local i = 0
local reused = 0
local wrapped = false
local n_setup = 0
local threads = {}

function setup(thread)
  thread:set("id", n_setup)
  n_setup = n_setup + 1
  table.insert(threads, thread)
end

function init(args)
  local t = tonumber(args[2] or "1")
  local n = 0
  for line in io.lines(args[1]) do
    if n % t == id then tokens[#tokens + 1] = line end
    n = n + 1
  end
end

function request()
  i = i + 1
  if i > #tokens then i = 1; wrapped = true end
  if wrapped then reused = reused + 1 end
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end

function done(summary, latency, requests)
  local r = 0
  for _, t in ipairs(threads) do r = r + (t:get("reused") or 0) end
  io.write(string.format("FRESH reused=%d\n", r))
end
