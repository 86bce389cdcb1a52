"""The HTTP API applies RabbitMQ's access-control table, as the AMQP door does: a user with
configure / write / read permissions `^app\\.` may declare, bind, publish, get, purge and delete
`app.*` resources over HTTP and nothing else; tags decide what else a user may reach.

Every (user, request) pair is compared with RabbitMQ 3.10's answer (status, ``error`` and, where
RabbitMQ words it, ``reason``). The expectations were recorded against Debian's rabbitmq-server
3.10.8 with this file: set ``MGMT_URL=http://127.0.0.1:15672`` (and ``AMQP_URL``) to run it
against a RabbitMQ with the management plugin instead of a Warren started here.
"""

import os
import urllib.parse
import uuid

import pytest

from conftest import WarrenProcess, warren_binary
from test_management import ROOT, Api

PW = "pw"


@pytest.fixture(scope="module")
def api():
    url = os.environ.get("MGMT_URL")
    if url:
        yield Api(urllib.parse.urlparse(url).port)
        return
    proc = WarrenProcess(warren_binary()).wait_ready()
    try:
        yield Api(proc.http_port)
    finally:
        proc.terminate()


@pytest.fixture(scope="module")
def world(api):
    """Users and resources: `app-<id>` (management; permissions `^app\\.` on everything),
    `mon-<id>` (monitoring; no permissions in `/`), `none-<id>` (no tags; full permissions);
    queues `other` / `app.q` and exchanges `other-x` / `app.x`, created by guest."""
    tag = uuid.uuid4().hex[:8]
    w = {
        "app": f"app-{tag}", "mon": f"mon-{tag}", "none": f"none-{tag}",
        "other": f"other-{tag}", "app_q": f"app.q-{tag}", "other_x": f"other-x-{tag}", "app_x": f"app.x-{tag}",
    }
    for user, tags in ((w["app"], "management"), (w["mon"], "monitoring"), (w["none"], "")):
        assert api.put(f"/api/users/{user}", {"password": PW, "tags": tags}).status in (201, 204)
    perm = r"^app\."
    assert api.put(f"/api/permissions/{ROOT}/{w['app']}",
                   {"configure": perm, "write": perm, "read": perm}).status in (201, 204)
    assert api.put(f"/api/permissions/{ROOT}/{w['none']}",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status in (201, 204)
    for name in (w["other"], w["app_q"]):
        assert api.put(f"/api/queues/{ROOT}/{name}", {"auto_delete": False}).status in (201, 204)
    for name in (w["other_x"], w["app_x"]):
        assert api.put(f"/api/exchanges/{ROOT}/{name}", {"type": "direct"}).status in (201, 204)
    yield w
    for name in (w["other"], w["app_q"], f"app.new-{tag}"):
        api.delete(f"/api/queues/{ROOT}/{name}")
    for name in (w["other_x"], w["app_x"], f"app.newx-{tag}"):
        api.delete(f"/api/exchanges/{ROOT}/{name}")
    for user in (w["app"], w["mon"], w["none"]):
        api.delete(f"/api/users/{user}")


def publish(rk):
    return {"properties": {}, "routing_key": rk, "payload": "p", "payload_encoding": "string"}


GET_BODY = {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}
REFUSED = (401, "not_authorised", "Access refused.")
NOT_FOUND = (404, "Object Not Found", "Not Found")


def cases(w):
    """(who, method, path, body, expected (status, error or None, reason or None))."""
    app, other, app_q, other_x, app_x = w["app"], w["other"], w["app_q"], w["other_x"], w["app_x"]
    new_q, new_x = app_q.replace("app.q", "app.new"), app_x.replace("app.x", "app.newx")
    refused_get = (401, "not_authorised",
                   f"ACCESS_REFUSED - access to queue '{other}' in vhost '/' refused for user '{app}'")
    refused_publish = (400, "bad_request", "403 ACCESS_REFUSED - access to exchange 'amq.default' "
                       f"in vhost '/' refused for user '{app}'")
    return [
        # configure on queues
        ("app", "PUT", f"/api/queues/{ROOT}/{other}", {}, REFUSED),
        ("app", "PUT", f"/api/queues/{ROOT}/{new_q}", {}, (201, None, None)),
        ("app", "DELETE", f"/api/queues/{ROOT}/{other}", None, REFUSED),
        # read on queues
        ("app", "DELETE", f"/api/queues/{ROOT}/{other}/contents", None, REFUSED),
        ("app", "POST", f"/api/queues/{ROOT}/{other}/get", GET_BODY, refused_get),
        ("app", "DELETE", f"/api/queues/{ROOT}/{app_q}/contents", None, (204, None, None)),
        ("app", "POST", f"/api/queues/{ROOT}/{app_q}/get", GET_BODY, (200, None, None)),
        # configure on exchanges
        ("app", "PUT", f"/api/exchanges/{ROOT}/{other_x}", {"type": "direct"}, REFUSED),
        ("app", "PUT", f"/api/exchanges/{ROOT}/{new_x}", {"type": "direct"}, (201, None, None)),
        ("app", "DELETE", f"/api/exchanges/{ROOT}/{other_x}", None, REFUSED),
        # write on exchanges
        ("app", "POST", f"/api/exchanges/{ROOT}/amq.default/publish", publish(app_q), refused_publish),
        ("app", "POST", f"/api/exchanges/{ROOT}/{app_x}/publish", publish("k"), (200, None, None)),
        # bindings: write on the destination, read on the source
        ("app", "POST", f"/api/bindings/{ROOT}/e/{other_x}/q/{app_q}", {"routing_key": "k"}, REFUSED),
        ("app", "POST", f"/api/bindings/{ROOT}/e/{app_x}/q/{other}", {"routing_key": "k"}, REFUSED),
        ("app", "POST", f"/api/bindings/{ROOT}/e/{app_x}/q/{app_q}", {"routing_key": "k"}, (201, None, None)),
        ("app", "POST", f"/api/bindings/{ROOT}/e/{app_x}/e/{other_x}", {"routing_key": "k"}, REFUSED),
        ("app", "DELETE", f"/api/bindings/{ROOT}/e/{app_x}/q/{app_q}/k", None, (204, None, None)),
        ("app", "DELETE", f"/api/queues/{ROOT}/{new_q}", None, (204, None, None)),
        ("app", "DELETE", f"/api/exchanges/{ROOT}/{new_x}", None, (204, None, None)),
        # missing resources: RabbitMQ answers 404 before the permission for DELETE and purge,
        # after it for /get, bindings and publish
        ("app", "DELETE", f"/api/queues/{ROOT}/{other}-missing", None, NOT_FOUND),
        ("app", "DELETE", f"/api/queues/{ROOT}/{other}-missing/contents", None, NOT_FOUND),
        ("app", "DELETE", f"/api/exchanges/{ROOT}/{other_x}-missing", None, NOT_FOUND),
        ("app", "DELETE", f"/api/queues/{ROOT}/{new_q}-missing", None, NOT_FOUND),
        ("app", "POST", f"/api/queues/{ROOT}/{other}-missing/get", GET_BODY,
         (401, "not_authorised", f"ACCESS_REFUSED - access to queue '{other}-missing' in vhost '/' "
          f"refused for user '{app}'")),
        ("app", "POST", f"/api/bindings/{ROOT}/e/amq.direct/q/{other}-missing", {"routing_key": "k"}, REFUSED),
        ("app", "POST", f"/api/bindings/{ROOT}/e/{other_x}-missing/q/{new_q}-missing", {"routing_key": "k"},
         REFUSED),
        ("app", "POST", f"/api/exchanges/{ROOT}/{other_x}-missing/publish", publish("k"),
         (400, "bad_request", f"403 ACCESS_REFUSED - access to exchange '{other_x}-missing' in vhost '/' "
          f"refused for user '{app}'")),
        # tags: monitoring without permissions in the vhost; no tags at all
        ("mon", "PUT", f"/api/queues/{ROOT}/{new_q}", {}, (401, "not_authorised", None)),
        ("mon", "DELETE", f"/api/queues/{ROOT}/{other}/contents", None, (401, "not_authorised", None)),
        ("none", "PUT", f"/api/queues/{ROOT}/{new_q}", {}, (401, "not_authorised", None)),
        ("none", "GET", "/api/queues", None, (401, "not_authorised", None)),
    ]


def test_every_mutating_endpoint_applies_the_access_control_table(api, world):
    results = []
    for who, method, path, body, expected in cases(world):
        as_user = api.as_user(world[who], PW)
        reply = as_user.request(method, path, body)
        status, error, reason = expected
        got = (reply.status, None, None)
        if reply.status >= 400:
            j = reply.json
            got = (reply.status, j.get("error") if error else None, j.get("reason") if reason else None)
        results.append((who, method, path, got == expected, got, expected))
    wrong = [r for r in results if not r[3]]
    assert not wrong, "\n".join(f"{who} {m} {p}: got {g}, RabbitMQ answers {e}" for who, m, p, _, g, e in wrong)
