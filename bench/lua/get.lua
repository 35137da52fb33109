-- A GET of the URL given to wrk, with the headers given by -H (e.g. Authorization).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
