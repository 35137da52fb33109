"""The canary's weights through a real data plane: Envoy configured as Envoy Gateway
configures it (tests/k8s/envoy_conf.py) from the HTTPRoute the canary writes
(conduit_deploy.canary.weighted_routes), in front of two echo servers."""

from __future__ import annotations

import copy
from collections import Counter

from conduit_deploy.canary import weighted_routes

from tests.k8s import envoy_conf
from tests.k8s.test_gateway_routes import Client, echo_server, edge_objects

REQUESTS = 10_000


def test_at_weight_5_five_percent_of_requests_reach_the_canary(rendered_envs, tmp_path):
    objects = copy.deepcopy(edge_objects("dev", rendered_envs))
    routes = [o for o in objects if o["kind"] == "HTTPRoute"]
    weighted = weighted_routes(routes, "conduit", 5)
    objects = [o for o in objects if o["kind"] != "HTTPRoute"] + weighted
    stable, canary = echo_server(), echo_server()
    try:
        upstreams = {
            "conduit": f"127.0.0.1:{stable.server_address[1]}",
            "conduit-canary": f"127.0.0.1:{canary.server_address[1]}",
        }
        with envoy_conf.serve(objects, upstreams, tmp_path) as running:
            client = Client(running)
            served = Counter()
            for _ in range(REQUESTS):
                status, echoed, _ = client.send("/flask/api/tags")
                assert status == 200
                served[echoed["server"]] += 1
    finally:
        for server in (stable, canary):
            server.shutdown()
            server.server_close()
    share = served[canary.server_address[1]] / REQUESTS
    assert sum(served.values()) == REQUESTS
    assert 0.04 <= share <= 0.06, f"{share:.2%} of {REQUESTS} requests reached the canary"
