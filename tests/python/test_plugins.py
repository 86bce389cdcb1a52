"""``rabbitmq-plugins`` and the ``enabled_plugins`` file tell the truth about Warren's plugins:
the ones it has built in (management, Prometheus, the consistent-hash, random, delayed-message
and event exchanges) are listed as enabled and running, ``enable`` of them succeeds and changes
nothing, ``disable`` says they stay on; a plugin Warren does not have (MQTT, STOMP, shovel,
federation, ...) is named with what it would give, ``enable`` and ``is_enabled`` of it fail, and
an ``enabled_plugins`` file that lists it gets one warning at boot instead of silence.

Warren-only: runs Warren's binary under RabbitMQ's CLI name and starts its own broker.
"""

import os
import subprocess
import tempfile

import pytest

from conftest import WarrenProcess, amqp_mode_is_external, warren_binary

pytestmark = pytest.mark.skipif(amqp_mode_is_external(),
                                reason="runs Warren's own rabbitmq-plugins and broker (AMQP_URL is set)")


@pytest.fixture(scope="module")
def plugins_cli():
    """``rabbitmq-plugins``: Warren's binary called by that name (as the container links it)."""
    with tempfile.TemporaryDirectory(prefix="warren-plugins-") as d:
        link = os.path.join(d, "rabbitmq-plugins")
        os.symlink(warren_binary(), link)

        def run(*args):
            return subprocess.run([link, *args], capture_output=True, text=True, timeout=30)
        yield run


def test_list_shows_built_in_plugins_enabled_and_missing_ones_not(plugins_cli):
    r = plugins_cli("list")
    assert r.returncode == 0, r.stderr
    rows = {line[5:].split()[0]: line for line in r.stdout.splitlines() if line.startswith("[")}
    for name in ("rabbitmq_management", "rabbitmq_prometheus", "rabbitmq_event_exchange",
                 "rabbitmq_delayed_message_exchange", "rabbitmq_consistent_hash_exchange",
                 "rabbitmq_shovel", "rabbitmq_shovel_management"):
        assert rows[name].startswith("[E*]"), rows.get(name)
    for name in ("rabbitmq_mqtt", "rabbitmq_stomp", "rabbitmq_federation"):
        assert rows[name].startswith("[  ]"), rows.get(name)
    r = plugins_cli("list", "-m", "-E")
    assert "rabbitmq_management" in r.stdout.split() and "rabbitmq_mqtt" not in r.stdout.split()
    r = plugins_cli("list", "-m", "hash")
    assert r.stdout.split() == ["rabbitmq_consistent_hash_exchange"]


def test_enable_is_a_no_op_for_built_in_plugins_and_fails_naming_missing_ones(plugins_cli):
    r = plugins_cli("enable", "rabbitmq_management", "rabbitmq_delayed_message_exchange")
    assert r.returncode == 0, r.stderr
    assert "always on" in r.stdout
    r = plugins_cli("enable", "rabbitmq_management", "rabbitmq_mqtt")
    assert r.returncode != 0
    assert "rabbitmq_mqtt (not included in Warren: MQTT clients cannot connect)" in r.stderr, r.stderr
    r = plugins_cli("enable", "no_such_plugin")
    assert r.returncode != 0 and "no_such_plugin (not a plugin Warren knows)" in r.stderr, r.stderr


def test_disable_and_is_enabled(plugins_cli):
    r = plugins_cli("disable", "rabbitmq_management")
    assert r.returncode == 0, r.stderr
    assert "rabbitmq_management is built into Warren and stays on" in r.stdout
    r = plugins_cli("is_enabled", "rabbitmq_management", "rabbitmq_event_exchange")
    assert r.returncode == 0, r.stderr
    assert "Plugin rabbitmq_event_exchange is enabled" in r.stdout
    r = plugins_cli("is_enabled", "rabbitmq_federation")
    assert r.returncode != 0
    assert "rabbitmq_federation (not included in Warren" in r.stderr, r.stderr


def test_an_enabled_plugins_file_naming_a_missing_plugin_is_reported_at_boot(monkeypatch, tmp_path):
    f = tmp_path / "enabled_plugins"
    f.write_text("[rabbitmq_management,rabbitmq_prometheus,rabbitmq_stomp].\n")
    monkeypatch.setenv("RABBITMQ_ENABLED_PLUGINS_FILE", str(f))
    proc = WarrenProcess(warren_binary())
    try:
        proc.wait_ready()
        out = proc.output()
        warnings = [line for line in out.splitlines() if "enables plugin" in line]
        assert len(warnings) == 1, out
        assert "rabbitmq_stomp, which Warren does not include: STOMP clients cannot connect" in warnings[0]
    finally:
        proc.terminate()
