-- wrk script for bench/memory.sh's soak: a paced mix of what production sends.
--   wrk ... -s bench/soak.lua URL_BASE -- POOLFILE FRESHFILE DELAY_MS
-- Out of every 10 requests: 5 carry one of 1,000 known tokens, 2 a token
-- never seen before (the file wraps when used up), 1 a bad token (401),
-- 1 the public route, 1 a known token on a connection closed after it.
-- Each connection waits DELAY_MS after every answer, so the load is an open
-- rate (connections x 1000 / DELAY_MS) rather than saturation.
local pool, fresh = {}, {}
local i, f, delay_ms = 0, 0, 4
local n_setup = 0

function setup(thread)
  thread:set("id", n_setup)
  n_setup = n_setup + 1
end

function init(args)
  for line in io.lines(args[1]) do pool[#pool + 1] = line end
  for line in io.lines(args[2]) do fresh[#fresh + 1] = line end
  delay_ms = tonumber(args[3]) or 4
  i = (id * 7919) % #pool
  f = math.floor(id * #fresh / 4)
end

function delay()
  return delay_ms
end

function request()
  i = i + 1
  local k = i % 10
  local tok = pool[i % #pool + 1]
  if k == 0 then
    return wrk.format("GET", "/public/soak")
  elseif k == 1 then
    return wrk.format("GET", "/api/soak", { ["Authorization"] = "Bearer " .. tok .. "x" })
  elseif k == 2 or k == 3 then
    f = f % #fresh + 1
    return wrk.format("GET", "/api/soak", { ["Authorization"] = "Bearer " .. fresh[f] })
  elseif k == 4 then
    return wrk.format("GET", "/api/soak", { ["Authorization"] = "Bearer " .. tok, ["Connection"] = "close" })
  end
  return wrk.format("GET", "/api/soak", { ["Authorization"] = "Bearer " .. tok })
end
