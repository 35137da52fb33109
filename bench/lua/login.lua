-- POST /api/users/login with the seeded user's credentials (BENCH_EMAIL, BENCH_PASSWORD).
-- Each request is a full password check at the server's bcrypt cost.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"user":{"email":' .. json_string(os.getenv("BENCH_EMAIL")) ..
           ',"password":' .. json_string(os.getenv("BENCH_PASSWORD")) .. '}}'
