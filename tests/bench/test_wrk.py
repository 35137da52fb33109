"""Reading wrk's results: the line bench/lua/report.lua prints, and nothing else."""

from __future__ import annotations

import pytest

from bench import wrk

REPORT = """\
Running 15s test @ http://127.0.0.1:8770/api/articles?limit=20
  2 threads and 16 connections
  Latency Distribution
     50%   24.89ms
     99%   97.05ms
  1526 requests in 3.05s, 15.19MB read
Requests/sec:    500.87
WRK_JSON {"requests":1526,"duration_us":3046686,"bytes":15929914,"errors":{"connect":0,\
"read":1526,"write":0,"status":3,"timeout":2},"latency_us":{"mean":27957.3,"p50":24894,\
"p90":41562,"p99":97051,"max":297341}}
"""


def test_the_result_line_gives_rates_latencies_and_errors():
    result = wrk.parse(REPORT)
    assert result.requests == 1526
    assert result.requests_per_s == pytest.approx(1526 / 3.046686)
    assert result.latency_ms["p50"] == pytest.approx(24.894)
    assert result.latency_ms["p99"] == pytest.approx(97.051)
    assert result.non_2xx == 3
    assert result.socket_errors == {"connect": 0, "read": 1526, "write": 0, "timeout": 2}


@pytest.mark.parametrize(
    "output",
    [
        "Requests/sec: 500.87\n",  # a script without report.lua
        REPORT + REPORT,  # two runs in one output: which one?
        'WRK_JSON {"requests": 1}\n',
        "WRK_JSON {not json\n",
    ],
)
def test_output_without_exactly_one_readable_result_is_an_error(output):
    with pytest.raises(wrk.WrkError):
        wrk.parse(output)


def test_the_command_line_is_bounded_and_asks_for_latency():
    load = wrk.Load(threads=2, connections=16, duration_s=15, timeout_s=10)
    args = wrk.command("wrk", "http://127.0.0.1:1/x", "get.lua", load, {"Authorization": "Token t"})
    assert args[0] == "wrk"
    assert {
        "--threads=2",
        "--connections=16",
        "--duration=15s",
        "--timeout=10s",
        "--latency",
    } <= set(args)
    assert "--header=Authorization: Token t" in args
    assert args[-1] == "http://127.0.0.1:1/x"
    script = next(a for a in args if a.startswith("--script="))
    assert script.endswith("bench/lua/get.lua")
