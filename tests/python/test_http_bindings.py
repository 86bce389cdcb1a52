"""Bindings over the HTTP API as RabbitMQ 3.10 names them: the `properties_key` it lists (the
routing key quoted, plus `~` and a hash of the arguments when there are any) finds the binding
again when a client quotes it once more in the path (rabbitmqadmin does) and, where no quoted
`~` is in it, as listed, for routing keys with `* # / % ~` and spaces; bindings between two ends are listed by
routing key. Runs against RabbitMQ too: set ``MGMT_URL`` (see test_http_authorization.py).
"""

import urllib.parse
import uuid

from test_http_authorization import api  # noqa: F401  (the MGMT_URL-or-Warren fixture)
from test_management import ROOT

KEYS = ["a.*", "a b", "x/y", "50%", "t~1", "#", "plain"]


def test_listed_properties_keys_find_their_bindings(api):  # noqa: F811
    queue = f"pk-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/queues/{ROOT}/{queue}", {"auto_delete": False}).status in (201, 204)
    base = f"/api/bindings/{ROOT}/e/amq.topic/q/{queue}"
    try:
        for key in KEYS:
            assert api.post(base, {"routing_key": key}).status == 201, key
        assert api.post(base, {"routing_key": "k", "arguments": {"x": 1}}).status == 201
        listed = api.ok(base)
        assert [b["routing_key"] for b in listed] == sorted(KEYS + ["k"]), listed
        for b in listed:
            pk = b["properties_key"]
            # Quoted once more, as rabbitmqadmin puts it in the path; and, where the path decoding
            # cannot turn a quoted `~` into the separator, as listed.
            paths = [f"{base}/{urllib.parse.quote(pk, safe='')}"]
            if "%7E" not in pk:
                paths.append(f"{base}/{pk}")
            for path in paths:
                got = api.ok(path)
                assert (got["routing_key"], got["arguments"]) == (b["routing_key"], b["arguments"]), (pk, got)
            assert api.delete(paths[-1]).status == 204, pk
        assert api.ok(base) == []
        assert api.get(f"{base}/nothing-here").status == 404
    finally:
        api.delete(f"/api/queues/{ROOT}/{queue}")
