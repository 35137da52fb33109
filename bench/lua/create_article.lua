-- POST /api/articles as the user of the Authorization header given by -H; every request
-- has a new title (thread number, counter and a per-run nonce), so every one creates
-- an article with a new slug instead of hitting the slug-collision path.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("number", threads)
end

local counter = 0
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
-- Added to the headers given by -H (the Authorization header).
wrk.headers["Content-Type"] = "application/json"
local body_text = string.rep("Measured under load, written by the benchmark. ", 20)

function request()
  counter = counter + 1
  local title = string.format("Benchmark article %s %d %d", nonce, number, counter)
  local body = string.format(
    '{"article":{"title":"%s","description":"Written by the load benchmark",' ..
    '"body":"%s","tagList":["benchmark","performance"]}}', title, body_text)
  return wrk.format("POST", nil, nil, body)
end
