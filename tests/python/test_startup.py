"""What a user sees when Warren starts, or cannot: a busy port is named with the flag that moves
it, an unusable data directory or a missing ``--config`` file is one line naming the path (never
a backtrace, even with ``RUST_BACKTRACE`` set), logs written to a pipe carry no colour codes,
``--log-format json`` writes one JSON object per line, and ``Server startup complete`` comes after
the startup log lines.

Warren-only: each test starts its own ``warren`` process.
"""

import json
import os
import socket
import subprocess
import tempfile

import pytest

from conftest import WarrenProcess, amqp_mode_is_external, warren_binary

pytestmark = pytest.mark.skipif(amqp_mode_is_external(),
                                reason="starts its own Warren processes (AMQP_URL is set)")

EXIT_TIMEOUT = 10


def run_failing(*args):
    """Run warren with ``args`` (and ports chosen by the OS where not given); it must exit 1.
    Returns its stderr."""
    with tempfile.TemporaryDirectory(prefix="warren-startup-") as d:
        argv = [str(warren_binary()), "--bind", "127.0.0.1", *args]
        for flag in ("--port", "--management-port", "--prometheus-port", "--stream-port"):
            if flag not in args:
                argv += [flag, "0"]
        if "--data-dir" not in args:
            argv += ["--data-dir", d]
        env = dict(os.environ, RUST_BACKTRACE="1")
        p = subprocess.run(argv, capture_output=True, text=True, timeout=EXIT_TIMEOUT, env=env,
                           stdin=subprocess.DEVNULL)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "backtrace" not in p.stderr.lower() and "panicked" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("warren: ")]
    assert len(errors) == 1, p.stderr
    return errors[0]


@pytest.fixture
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("flag,name", [
    ("--port", "AMQP"),
    ("--management-port", "the management API"),
    ("--prometheus-port", "Prometheus"),
])
def test_a_busy_port_is_named_with_the_flag_that_moves_it(busy_port, flag, name):
    err = run_failing(flag, str(busy_port))
    assert f"cannot listen for {name} on 127.0.0.1:{busy_port}" in err, err
    assert flag in err, err


def test_a_missing_config_file_is_an_error():
    err = run_failing("--config", "/nonexistent/warren-test.conf")
    assert "/nonexistent/warren-test.conf" in err and "not found" in err, err


def test_an_unusable_data_directory_is_named():
    with tempfile.NamedTemporaryFile(prefix="warren-not-a-dir-") as f:
        path = os.path.join(f.name, "data")
        err = run_failing("--data-dir", path)
    assert path in err, err


def test_logs_to_a_pipe_have_no_colour_codes_and_startup_complete_comes_last():
    proc = WarrenProcess(warren_binary()).wait_ready()
    try:
        out = proc.output()
    finally:
        proc.terminate()
    assert "\x1b[" not in out, out
    lines = out.splitlines()
    started = next(i for i, line in enumerate(lines) if "Warren" in line and "started" in line)
    assert started < lines.index("Server startup complete"), out


def test_json_log_format_writes_one_object_per_line():
    proc = WarrenProcess(warren_binary(), extra_args=("--log-format", "json")).wait_ready()
    try:
        out = proc.output()
    finally:
        proc.terminate()
    logs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert logs, out
    assert all("level" in entry and "fields" in entry for entry in logs), logs
    assert any("started" in entry["fields"].get("message", "") for entry in logs), logs
