-- wrk script: each request carries the next token of a file, round-robin.
--   wrk ... -s bench/pool.lua URL -- TOKENFILE
-- Each thread starts at its own offset so the threads do not walk in step.
local tokens = {}
local i = 0
local n_setup = 0

function setup(thread)
  thread:set("id", n_setup)
  n_setup = n_setup + 1
end

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  i = (id * 7919) % #tokens
end

function request()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
