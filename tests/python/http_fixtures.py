"""Fixtures for suites that drive the management API, imported by those test modules
(``from http_fixtures import api, vhost``):

* ``api``: the management API as guest: Warren's (started by conftest) or, when ``MGMT_URL``
  is set, that broker's (the differential run against RabbitMQ);
* ``vhost``: a fresh virtual host with full permissions for guest, deleted after the test, so a
  test can change vhost-wide settings (limits, tracing) without touching the others;
* ``controlled``: a Warren started with ``--test-controls`` for the module (fault injection, the
  virtual clock), with ``capi`` (its management API as guest) and ``cvhost`` (a fresh vhost on it).
"""

import os
import urllib.parse
import uuid

import pytest

from conftest import WarrenProcess, warren_binary
from test_management import Api


@pytest.fixture
def api(broker):
    url = os.environ.get("MGMT_URL")
    if url:
        return Api(urllib.parse.urlparse(url).port)
    return Api(broker.process.http_port)


def _fresh_vhost(api, request):
    name = f"{request.module.__name__.removeprefix('test_')}-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/api/vhosts/{name}", {}).status in (201, 204)
    assert api.put(f"/api/permissions/{name}/guest",
                   {"configure": ".*", "write": ".*", "read": ".*"}).status in (201, 204)
    return name


@pytest.fixture
def vhost(api, request):
    name = _fresh_vhost(api, request)
    yield name
    api.delete(f"/api/vhosts/{name}")


@pytest.fixture(scope="module")
def controlled():
    p = WarrenProcess(warren_binary(), extra_args=("--test-controls",))
    p.wait_ready()
    yield p
    p.terminate()


@pytest.fixture
def capi(controlled):
    return Api(controlled.http_port)


@pytest.fixture
def cvhost(capi, request):
    name = _fresh_vhost(capi, request)
    yield name
    capi.delete(f"/api/vhosts/{name}")
