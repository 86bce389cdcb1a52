"""The recipes docker/README.md gives for using Warren's image in place of RabbitMQ's, run with
podman on the image test_container.py builds (docker/build-prebuilt.sh):

* docker/compose.yml: its ``rabbitmq`` service as shipped (volume line, environment, health check;
  only the image tag and the host side of the ports changed, and the ``app`` service left out) is
  brought up with podman-compose, given a durable queue with persistent messages and a user made
  over the HTTP API, taken ``down`` and brought ``up`` again: everything is still there.
* The GitHub Actions and GitLab CI snippets (YAML blocks in docker/README.md): parsed, checked
  against what the image provides (ports it exposes, variables it reads, the credentials the job's
  AMQP_URL uses), and the container started as the runners would start it, options and variables
  included, then reached with that URL.
* Testcontainers' Python RabbitMQ module, with the image as its image, through podman's
  Docker-compatible API socket (``podman system service``).

Like test_container.py these need buildah, podman, runc (scripts/install-container-tools.sh) and
podman-compose; they fail when those are missing and are skipped with WARREN_CONTAINER_TEST=binary.
"""
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pika
import pytest
import yaml

from conftest import amqp_mode_is_external, eventually
from test_container import (DATA_DIR, PODMAN_RUN, REPO, USE_PODMAN, built_image, free_port,
                            http_api, run)

pytestmark = [
    pytest.mark.skipif(amqp_mode_is_external(), reason="needs Warren's own image; AMQP_URL is set"),
    pytest.mark.skipif(not USE_PODMAN, reason="WARREN_CONTAINER_TEST=binary: needs the image (podman)"),
]

README = REPO / "docker" / "README.md"
COMPOSE = REPO / "docker" / "compose.yml"
# What the image reads from its environment (docker/README.md's table and list).
IMAGE_ENV = {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS", "RABBITMQ_DEFAULT_VHOST"}


@pytest.fixture(scope="module")
def image():
    return built_image()


@pytest.fixture(scope="module")
def exposed(image):
    """The image's EXPOSEd TCP ports."""
    ports = run(["podman", "image", "inspect", "-f", "{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}", image])
    return {int(p.split("/")[0]) for p in ports.stdout.split()}


@pytest.fixture(scope="module")
def containers_conf(tmp_path_factory):
    """podman settings for the tools that start containers themselves (podman-compose, the API
    service): runc and the ulimits this machine allows, as PODMAN_RUN passes them."""
    path = tmp_path_factory.mktemp("podman") / "containers.conf"
    path.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                    '[engine]\nruntime = "runc"\n')
    return path


def readme_yaml(heading_line):
    """The YAML block that follows the paragraph starting with ``heading_line`` in docker/README.md."""
    text = README.read_text()
    start = text.index(heading_line)
    block = re.search(r"```yaml\n(.*?)```", text[start:], re.S)
    assert block, f"no yaml block after {heading_line!r} in {README}"
    return yaml.safe_load(block.group(1))


def wait_started(name):
    def started():
        r = run(["podman", "logs", name])
        return "Server startup complete" in r.stdout + r.stderr or None
    eventually(started, timeout=20)


def amqp_params(url, port):
    """pika parameters for an AMQP URL from a recipe, with its host replaced by this machine's
    loopback address and port (the host side of the container's port mapping)."""
    u = urllib.parse.urlparse(url)
    vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
    return pika.ConnectionParameters("127.0.0.1", port, vhost, pika.PlainCredentials(u.username, u.password),
                                     connection_attempts=1, socket_timeout=5)


def round_trip(params, queue="recipe"):
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.confirm_delivery()
    ch.basic_publish("", queue, b"ping")
    body = ch.basic_get(queue, auto_ack=True)[2]
    conn.close()
    return body


# --------------------------------------------------------------------------
# docker compose
# --------------------------------------------------------------------------

def test_compose_file_down_and_up_keeps_queues_messages_and_users(image, exposed, containers_conf, tmp_path):
    compose_bin = shutil.which("podman-compose")
    assert compose_bin, "podman-compose missing: scripts/install-container-tools.sh installs it"
    shipped = yaml.safe_load(COMPOSE.read_text())
    assert set(shipped["services"]) == {"rabbitmq", "app"}
    svc = shipped["services"]["rabbitmq"]
    # The shipped file is a RabbitMQ compose file with another image: its volume is where the
    # rabbitmq image keeps its data, and that is where this image keeps it.
    assert svc["volumes"][0] == f"rabbitmq-data:{DATA_DIR}"
    container_ports = [int(p.split(":")[-1]) for p in svc["ports"]]
    assert set(container_ports) <= exposed
    env = svc["environment"]
    assert set(env) <= IMAGE_ENV
    # Only what cannot run here changes: the image tag (built locally) and the host ports (which
    # must be free on this machine). The app service (built from the user's code) is left out.
    host = {p: free_port() for p in container_ports}
    svc = dict(svc, image=image, ports=[f"127.0.0.1:{host[p]}:{p}" for p in container_ports])
    derived = tmp_path / "compose.yml"
    derived.write_text(yaml.safe_dump({"services": {"rabbitmq": svc}, "volumes": shipped["volumes"]}))
    project = f"warren-test-{os.getpid()}"
    compose_env = dict(os.environ, CONTAINERS_CONF=str(containers_conf))

    def compose(*args):
        r = subprocess.run([compose_bin, "-p", project, "-f", str(derived), *args], capture_output=True,
                           text=True, timeout=60, env=compose_env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

    def container_id(name):
        return run(["podman", "inspect", "-f", "{{.Id}}", name]).stdout.strip()

    def service_container():
        r = run(["podman", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                 "--format", "{{.Names}}"])
        names = r.stdout.split()
        assert len(names) <= 1, names
        return names[0] if names else None

    params = pika.ConnectionParameters("127.0.0.1", host[5672], env["RABBITMQ_DEFAULT_VHOST"],
                                       pika.PlainCredentials(env["RABBITMQ_DEFAULT_USER"], env["RABBITMQ_DEFAULT_PASS"]),
                                       connection_attempts=1, socket_timeout=5)
    try:
        compose("up", "-d")
        first = service_container()
        first_id = container_id(first)
        wait_started(first)
        # The compose file's health check, run as Docker Compose runs a ["CMD", ...] test, and as
        # podman-compose set it up (1.0.3, Debian 12's, wraps it in a second `/bin/sh -c`, which
        # the image's built-in sh unwraps).
        kind, *argv = svc["healthcheck"]["test"]
        assert kind == "CMD"
        r = run(["podman", "exec", first, *argv])
        assert r.returncode == 0, r.stdout + r.stderr
        r = run(["podman", "healthcheck", "run", first])
        assert r.returncode == 0, r.stdout + r.stderr
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        ch.queue_declare("orders", durable=True)
        ch.confirm_delivery()
        for i in range(10):
            ch.basic_publish("", "orders", f"o{i}".encode(), pika.BasicProperties(delivery_mode=2))
        conn.close()
        admin = (env["RABBITMQ_DEFAULT_USER"], env["RABBITMQ_DEFAULT_PASS"])
        assert http_api(host[15672], "PUT", "/api/users/carol", {"password": "c4rol", "tags": ""}, *admin) in (201, 204)
        assert http_api(host[15672], "PUT", "/api/permissions/%2F/carol",
                        {"configure": ".*", "write": ".*", "read": ".*"}, *admin) in (201, 204)

        compose("down")
        assert service_container() is None
        compose("up", "-d")
        second = service_container()
        wait_started(second)
        assert container_id(second) != first_id, "down kept the container"
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", host[5672], credentials=pika.PlainCredentials("carol", "c4rol"),
            connection_attempts=1, socket_timeout=5))
        ch = conn.channel()
        assert ch.queue_declare("orders", passive=True).method.message_count == 10
        assert ch.basic_get("orders", auto_ack=True)[2] == b"o0"
        conn.close()
    finally:
        subprocess.run([compose_bin, "-p", project, "-f", str(derived), "down", "-v"], capture_output=True,
                       timeout=60, env=compose_env)
        run(["podman", "volume", "rm", "-f", f"{project}_rabbitmq-data"])


# --------------------------------------------------------------------------
# CI service containers
# --------------------------------------------------------------------------

@pytest.fixture
def started():
    """Containers started by a test, removed after it."""
    names = []
    yield names
    for n in names:
        run(["podman", "rm", "-f", "-v", n])


def test_github_actions_service_container(image, exposed, started):
    workflow = readme_yaml("GitHub Actions")
    job = workflow["jobs"]["test"]
    svc = job["services"]["rabbitmq"]
    assert svc["image"].rsplit("/", 1)[-1].startswith("warren:")
    ports = {int(c): int(h) for h, c in (p.split(":") for p in svc["ports"])}
    assert set(ports) <= exposed and 5672 in ports
    assert set(svc["env"]) <= IMAGE_ENV
    url = urllib.parse.urlparse(job["env"]["AMQP_URL"])
    assert (url.hostname, url.port) == ("localhost", ports[5672])
    assert (url.username, url.password) == (svc["env"]["RABBITMQ_DEFAULT_USER"], svc["env"]["RABBITMQ_DEFAULT_PASS"])
    # The runner creates the container with the service's options, env and ports (`docker create
    # <options> -e K=V -p H:C image`); here the host ports are free ones.
    name = f"warren-gha-{os.getpid()}"
    host = {c: free_port() for c in ports}
    cmd = PODMAN_RUN + ["-d", "--name", name, *shlex.split(svc["options"])]
    for k, v in svc["env"].items():
        cmd += ["-e", f"{k}={v}"]
    for c, h in host.items():
        cmd += ["-p", f"127.0.0.1:{h}:{c}"]
    started.append(name)
    r = run(cmd + [image])
    assert r.returncode == 0, r.stderr
    wait_started(name)
    # The options' --health-cmd replaced the image's check, and passes: the job's steps start.
    test = run(["podman", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", name]).stdout
    assert "rabbitmq-diagnostics -q ping" in test, test
    r = run(["podman", "healthcheck", "run", name])
    assert r.returncode == 0, r.stdout + r.stderr
    assert round_trip(amqp_params(job["env"]["AMQP_URL"], host[5672])) == b"ping"
    assert http_api(host[15672], "GET", "/api/overview", None, url.username, url.password) == 200


def test_gitlab_ci_service_container(image, exposed, started):
    job = readme_yaml("GitLab CI")["test"]
    (svc,) = job["services"]
    assert svc["name"].rsplit("/", 1)[-1].startswith("warren:")
    assert svc["alias"] == "rabbitmq"
    # The runner's wait-for-service check: a TCP connection to this port of the service.
    check_port = int(svc["variables"]["HEALTHCHECK_TCP_PORT"])
    assert check_port in exposed
    url = urllib.parse.urlparse(job["variables"]["AMQP_URL"])
    assert (url.hostname, url.port) == (svc["alias"], 5672)
    image_vars = {k: v for k, v in job["variables"].items() if k.startswith("RABBITMQ_")}
    assert set(image_vars) <= IMAGE_ENV
    assert (url.username, url.password) == (image_vars["RABBITMQ_DEFAULT_USER"], image_vars["RABBITMQ_DEFAULT_PASS"])
    # GitLab gives a service the job's variables and its own.
    name = f"warren-gitlab-{os.getpid()}"
    host = {5672: free_port()}
    host.setdefault(check_port, free_port())
    cmd = PODMAN_RUN + ["-d", "--name", name]
    for k, v in {**job["variables"], **svc["variables"]}.items():
        cmd += ["-e", f"{k}={v}"]
    for c, h in host.items():
        cmd += ["-p", f"127.0.0.1:{h}:{c}"]
    started.append(name)
    r = run(cmd + [image])
    assert r.returncode == 0, r.stderr

    def accepts():
        try:
            socket.create_connection(("127.0.0.1", host[check_port]), timeout=2).close()
            return True
        except OSError:
            return None
    eventually(accepts, timeout=20)
    wait_started(name)
    assert round_trip(amqp_params(job["variables"]["AMQP_URL"], host[5672])) == b"ping"


# --------------------------------------------------------------------------
# Testcontainers
# --------------------------------------------------------------------------

@pytest.fixture
def podman_api(containers_conf, tmp_path, monkeypatch):
    """podman's Docker-compatible API on a unix socket, as DOCKER_HOST."""
    sock = tmp_path / "podman.sock"
    log = open(tmp_path / "podman-service.log", "w")
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ, CONTAINERS_CONF=str(containers_conf)))
    try:
        eventually(lambda: sock.exists() or None, timeout=10)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
        # No Ryuk (its image cannot be pulled here); the tests are on the same host as the
        # containers' published ports, though inside a container themselves.
        monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
        monkeypatch.setenv("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
        monkeypatch.setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


# The module's own use of an API its library deprecates; not this test's concern.
@pytest.mark.filterwarnings("ignore:The @wait_container_is_ready decorator is deprecated")
def test_python_testcontainers_rabbitmq_module(image, podman_api):
    # The module reads its configuration from the environment when first imported.
    from testcontainers.community.rabbitmq import RabbitMqContainer

    with RabbitMqContainer(image, username="app", password="secret") as rabbitmq:
        params = rabbitmq.get_connection_params()
        assert round_trip(params, "from-testcontainers") == b"ping"
        conn = pika.BlockingConnection(params)
        conn.channel().queue_declare("listed", durable=True)
        conn.close()
        code, out = rabbitmq.exec(["rabbitmqctl", "list_queues", "name"])
        assert code == 0 and "listed" in out.decode(), out
