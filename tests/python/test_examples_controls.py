"""The test-control examples (``examples/node/test-controls.test.js``, node:test + amqplib, and
``examples/python/test_controls_example.py``, pytest + pika) run as shipped against a Warren
started with ``--test-controls``, each as its own test run, and must pass.

Warren-only (they use Warren's test controls); the Node one needs this suite's amqplib
(tests/node/node_modules, installed by scripts/test.sh) and is skipped without it.
"""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, amqp_mode_is_external
from http_fixtures import controlled  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(amqp_mode_is_external(),
                                reason="the examples use Warren's test controls (AMQP_URL is set)")

NODE_MODULES = REPO_ROOT / "tests" / "node" / "node_modules"


def env_for(p):
    return dict(os.environ, AMQP_URL=f"amqp://guest:guest@127.0.0.1:{p.port}/%2F",
                MGMT_URL=f"http://127.0.0.1:{p.http_port}")


def test_the_python_example_passes(controlled):
    example = REPO_ROOT / "examples" / "python" / "test_controls_example.py"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example)],
                       cwd=example.parent, env=env_for(controlled), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout, r.stdout


@pytest.mark.skipif(not (NODE_MODULES / "amqplib").is_dir(), reason="tests/node/node_modules has no amqplib")
def test_the_node_example_passes(controlled):
    example = REPO_ROOT / "examples" / "node" / "test-controls.test.js"
    env = dict(env_for(controlled), NODE_PATH=str(NODE_MODULES))
    r = subprocess.run(["node", "--test", str(example)], cwd=example.parent, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "# pass 3" in r.stdout and "# fail 0" in r.stdout, r.stdout
