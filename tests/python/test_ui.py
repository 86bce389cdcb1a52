"""The web management UI (``broker/src/mgmt/ui/index.html``, served at ``/`` on
the management port), driven in headless Chromium through Selenium.

Every test works the page the way a user would -- login form, tabs, the inline
forms, the row buttons and their confirm() dialogs -- and checks the result on
the other side: over AMQP with pika, or through the management API with
urllib.  Objects made over AMQP must show up in the page (the page refreshes
its view every 5 s).  The Overview test also checks a screenshot, decoded with
the stdlib: a valid PNG of the viewport's size, in the page's colours, with the
header's accent line where the header ends.

The broker is a Warren started by this module, so the module is skipped when
AMQP_URL points the suite at another broker; it is also skipped when Chromium
or chromedriver is missing.  Selenium never downloads anything: both binaries
are given by path (Selenium Manager is not run).
"""

import base64
import collections
import json
import os
import re
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib

import pika
import pika.exceptions
import pytest

from conftest import (HTTP_RE, LISTEN_RE, PROMETHEUS_RE, WarrenProcess,
                      amqp_mode_is_external, eventually, get_message, warren_binary)
from test_stream_protocol import (Confirms, Inbox, OffsetType, StreamAddr, make_consumer,
                                  make_producer, open_client, run, spec, wait_until)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.skipif(
        amqp_mode_is_external(),
        reason="drives the UI of a Warren started by this module (AMQP_URL is set: "
               "the suite is pointed at another broker)"),
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason=f"browser tests need {CHROMIUM} and {CHROMEDRIVER} "
               "(Debian packages chromium and chromium-driver)"),
]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
# pylint: disable=wrong-import-position
from selenium.common.exceptions import (ElementNotInteractableException,  # noqa: E402
                                        NoSuchElementException,
                                        StaleElementReferenceException, TimeoutException)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WINDOW = (1280, 900)
WAIT = 5.0              # an action's effect (API round trip + re-render)
REFRESH_WAIT = 8.0      # something only the 5 s periodic refresh will show
GUEST = ("guest", "guest")

# Something only the given tab's view has (CSS selector, text or None): the
# tab's view is shown once it is there.
TAB_MARKERS = {
    "Overview": ("#totals", None),
    "Connections": ("#content th", "TLS"),
    "Channels": ("#content th", "Prefetch"),
    "Exchanges": ("form[onsubmit^='addExchange(']", None),
    "Queues": ("#add-queue", None),
    "Streams": ("#stream-connections", None),
    "Shovels": ("#add-shovel", None),
    "Admin": ("form[onsubmit^='addUser(']", None),
}


def _uid():
    return uuid.uuid4().hex[:8]


# --------------------------------------------------------------------------
# Broker, browser, management API
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    binary = warren_binary()
    if not binary.is_file():
        pytest.fail(f"Warren binary not found at {binary}", pytrace=False)
    log = tmp_path_factory.mktemp("warren-ui") / "warren.log"
    proc = WarrenProcess(binary, log)
    try:
        proc.wait_ready()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if proc.http_port is None:
        proc.terminate()
        pytest.fail("Warren printed no 'Listening for HTTP on' line; output:\n"
                    + proc.output(), pytrace=False)
    yield proc
    proc.terminate()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("ui-downloads")


@pytest.fixture(scope="module")
def driver(downloads):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--no-first-run",
                "--disable-extensions", "--lang=en-US", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
    })
    # Passing the driver's path keeps Selenium Manager (which downloads) out of it.
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(15)
    drv.set_script_timeout(10)
    yield drv
    drv.quit()


def api(warren, method, path, body=None, auth=GUEST):
    """Call the management API; returns ``(status, decoded JSON or None)``."""
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{warren.http_port}/api{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Basic " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, data = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, data = err.code, err.read()
    try:
        return status, (json.loads(data) if data else None)
    except ValueError:
        return status, data


def q(name):
    """A path segment of the API: ``/`` is ``%2F``."""
    return urllib.parse.quote(name, safe="")


def params(warren, user="guest", password="guest", vhost="/", **more):
    return pika.ConnectionParameters(
        host="127.0.0.1", port=warren.port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1, socket_timeout=5, stack_timeout=10, **more)


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------

class Page:
    """The UI in the browser, with waits that say what the page showed."""

    def __init__(self, drv, url):
        self.d = drv
        self.url = url

    # -- waiting -----------------------------------------------------------

    def wait(self, condition, what, timeout=WAIT):
        """Poll ``condition()`` until truthy.  Missing elements mean "not yet";
        so do elements that a re-render replaced under the action (stale, or
        detached while chromedriver was typing into them: not interactable)."""
        try:
            return WebDriverWait(
                self.d, timeout, poll_frequency=0.05,
                ignored_exceptions=(StaleElementReferenceException, NoSuchElementException,
                                    ElementNotInteractableException),
            ).until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; page: {self.state()}") from None

    def state(self):
        try:
            return self.d.execute_script("""
                const c = document.getElementById('content'), m = document.getElementById('msg');
                return {tab: c.dataset.ready, message: m.textContent,
                        login_error: document.getElementById('login-error').textContent,
                        content: c.innerText.slice(0, 1500)};""")
        except Exception as exc:  # pylint: disable=broad-except
            return f"<unavailable: {exc!r}>"

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def visible(self, element_id):
        return self.d.find_element(By.ID, element_id).is_displayed()

    # -- session -----------------------------------------------------------

    def fresh(self):
        """A newly loaded page, logged out (the login lives in sessionStorage)."""
        try:
            self.d.switch_to.alert.dismiss()
        except Exception:  # pylint: disable=broad-except
            pass
        self.d.get(self.url)
        self.js("sessionStorage.clear()")
        self.d.get("about:blank")
        self.d.get(self.url)
        self.wait(lambda: self.visible("login"), "the login form")

    def login(self, user="guest", password="guest"):
        self.d.find_element(By.ID, "user").clear()
        self.d.find_element(By.ID, "user").send_keys(user)
        self.d.find_element(By.ID, "pass").clear()
        self.d.find_element(By.ID, "pass").send_keys(password)
        self.d.find_element(By.ID, "login-button").click()

    def login_ok(self, user="guest", password="guest"):
        """Log in; the app shows the Overview (the page was loaded without a tab)."""
        self.login(user, password)
        self.wait(lambda: self.visible("app") and
                  self.d.find_element(By.ID, "whoami").text == user,
                  f"the app, logged in as {user}")
        self.wait_tab("Overview")

    # -- navigation and reading --------------------------------------------

    def tab(self, name):
        self.d.find_element(By.CSS_SELECTOR, f"nav button[data-tab='{name}']").click()
        self.wait_tab(name)

    def wait_tab(self, name):
        self.wait(lambda: self.js("""
            const [name, css, text] = arguments;
            return document.getElementById('content').dataset.ready === name &&
                document.querySelector('nav button.active').dataset.tab === name &&
                [...document.querySelectorAll(css)].some(e => text === null || e.textContent === text);
            """, name, *TAB_MARKERS[name]), f"the {name} tab")

    def row(self, key, col=0):
        """The cells' text of the first table row whose cell ``col`` is ``key``
        (None if there is none)."""
        return self.js("""
            const [key, col] = arguments;
            const r = [...document.querySelectorAll('#content tbody tr')]
                .find(r => r.cells[col] && r.cells[col].textContent === key);
            return r ? [...r.cells].map(c => c.innerText.trim()) : null;""", key, col)

    def rows(self, key, col=0):
        """The cells' text of every table row whose cell ``col`` is ``key``."""
        return self.js("""
            const [key, col] = arguments;
            return [...document.querySelectorAll('#content tbody tr')]
                .filter(r => r.cells[col] && r.cells[col].textContent === key)
                .map(r => [...r.cells].map(c => c.innerText.trim()));""", key, col)

    def queue_row(self, name):
        """Cells of the Queues table row for queue ``name`` (its data-queue)."""
        return self.js("""
            const r = [...document.querySelectorAll('#content tr[data-queue]')]
                .find(r => r.dataset.queue === arguments[0]);
            return r ? [...r.cells].map(c => c.innerText.trim()) : null;""", name)

    def card(self, section, label):
        """The value of the card labelled ``label`` in ``#totals``/``#rates``."""
        return self.js("""
            const c = [...document.querySelectorAll('#' + arguments[0] + ' .card')]
                .find(c => c.querySelector('.k').textContent === arguments[1]);
            return c ? c.querySelector('.v').textContent : null;""", section, label)

    # -- acting --------------------------------------------------------------

    def click_row_button(self, label, key, col=0, queue=False):
        """Click button ``label`` in the row of ``key`` (retried if the periodic
        refresh replaces the table between finding and clicking)."""
        def attempt():
            button = self.js("""
                const [key, col, label, queue] = arguments;
                const r = [...document.querySelectorAll('#content tbody tr')].find(r => queue
                    ? r.dataset.queue === key : r.cells[col] && r.cells[col].textContent === key);
                return r ? [...r.querySelectorAll('button')].find(b => b.textContent === label)
                         : null;""", key, col, label, queue)
            if button is None:
                return False
            button.click()
            return True
        self.wait(attempt, f"a {label!r} button in the row of {key!r}")

    def open_queue(self, name):
        """From the Queues tab, follow queue ``name``'s link to its page (vhost /)."""
        self.tab("Queues")
        self.wait(lambda: self.queue_row(name) is not None, name)
        self.js("""[...document.querySelectorAll('#content tr[data-queue]')].find(r => r.dataset.queue === arguments[0])
                 .querySelector('a').click()""", name)
        self.wait(lambda: self.js("return document.getElementById('content').dataset.ready") == f"queue / {name}",
                  "the queue's page")

    def submit(self, handler, values):
        """Fill the form whose onsubmit calls ``handler`` and submit it.

        The page rebuilds its view (forms included) every 5 s, so a fill that
        the refresh interrupts (stale elements) starts again."""
        def attempt():
            form = self.d.find_element(By.CSS_SELECTOR, f"#content form[onsubmit^='{handler}(']")
            for name, value in values.items():
                field = form.find_element(By.NAME, name)
                if field.tag_name == "select":
                    # By the option's value (the page's options may only have text).
                    option = next(o for o in Select(field).options
                                  if o.get_attribute("value") == value)
                    option.click()
                    assert Select(field).first_selected_option.get_attribute("value") == value
                else:
                    field.clear()
                    if value:
                        field.send_keys(value)
            form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            return True
        self.wait(attempt, f"the {handler} form")

    def on(self, element_id, action):
        """``action(element)`` on element ``element_id``, retried if the periodic
        refresh replaces it first."""
        def attempt():
            action(self.d.find_element(By.ID, element_id))
            return True
        self.wait(attempt, f"#{element_id}")

    def expect_message(self, action, text, timeout=WAIT):
        """Run ``action`` and wait for the page's message (bottom right) to read
        ``text`` and for the view to be rebuilt: the page shows the message, then
        reloads the view (which would replace forms under the next action)."""
        self.js("""document.getElementById('msg').textContent = '';
                   document.getElementById('content').firstElementChild._shownBefore = true;""")
        action()
        self.wait(lambda: self.d.find_element(By.ID, "msg").text == text and
                  self.visible("msg"), f"the message {text!r}", timeout)
        self.wait(lambda: self.js("const e = document.getElementById('content').firstElementChild;"
                                  "return !!e && !e._shownBefore"),
                  f"the view rebuilt after {text!r}", timeout)

    def confirm(self, expected_text):
        """Accept the confirm() dialog, checking its question."""
        try:
            alert = WebDriverWait(self.d, WAIT).until(EC.alert_is_present())
        except TimeoutException:
            raise AssertionError(f"no confirm dialog ({expected_text!r})") from None
        assert alert.text == expected_text
        alert.accept()


@pytest.fixture
def page(driver, warren):
    p = Page(driver, f"http://127.0.0.1:{warren.http_port}/")
    p.fresh()
    yield p
    try:
        driver.switch_to.alert.dismiss()
    except Exception:  # pylint: disable=broad-except
        pass


@pytest.fixture
def ui(page):
    """The page, logged in as guest, on the Overview tab."""
    page.login_ok()
    return page


# --------------------------------------------------------------------------
# PNG (stdlib only)
# --------------------------------------------------------------------------

def png_decode(data, pixels=True):
    """Check ``data`` is a well-formed 8-bit RGB/RGBA PNG (signature, chunk
    CRCs, IHDR first, IEND last, as much pixel data as IHDR says) and return
    ``(width, height, rows)``, rows being lists of pixel tuples (None unless
    ``pixels``: unfiltering in pure Python takes a while)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} chunk"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and colour in (2, 6) and interlace == 0, "unexpected PNG format"
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * bpp
    assert len(raw) == height * (stride + 1), "pixel data does not match IHDR"
    if not pixels:
        return width, height, None
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        else:
            assert ftype == 0, f"bad filter type {ftype}"
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return width, height, rows


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

def test_login(page, warren):
    assert not page.visible("app")
    # A wrong password: the page's own error, still on the login form (no
    # browser login prompt, nothing remembered).
    page.login("guest", "wrong-password")
    page.wait(lambda: page.d.find_element(By.ID, "login-error").text == "Login failed",
              "'Login failed' under the login form")
    assert page.visible("login") and not page.visible("app")
    assert page.js("return sessionStorage.getItem('warren-auth')") is None

    page.login_ok("guest", "guest")
    assert not page.visible("login-view")
    _, overview = api(warren, "GET", "/overview")
    assert page.d.find_element(By.ID, "version").text == overview["product_version"]
    assert [b.text for b in page.d.find_elements(By.CSS_SELECTOR, "nav button")] == \
        ["Overview", "Connections", "Channels", "Exchanges", "Queues", "Streams", "Shovels", "Admin"]

    # The login survives a reload (sessionStorage); "Log out" forgets it.
    page.d.refresh()
    page.wait(lambda: page.visible("app") and
              page.d.find_element(By.ID, "whoami").text == "guest", "the app after a reload")
    page.d.find_element(By.LINK_TEXT, "Log out").click()
    page.wait(lambda: page.visible("login") and not page.visible("app"),
              "the login form after logging out")
    assert page.js("return sessionStorage.getItem('warren-auth')") is None


def test_overview(ui, warren, open_connection, tmp_path):
    status, before = api(warren, "GET", "/overview")
    assert status == 200
    ready0 = before["queue_totals"]["messages_ready"]
    unacked0 = before["queue_totals"]["messages_unacknowledged"]
    queues0 = before["object_totals"]["queues"]
    assert ui.card("totals", "Ready") == f"{ready0:,}"

    # Objects made over AMQP after the page was shown: the periodic refresh shows them.
    conn = open_connection(params(warren))
    ch = conn.channel()
    ch.confirm_delivery()
    names = [f"ui-overview.{_uid()}" for _ in range(2)]
    for name in names:
        ch.queue_declare(name, auto_delete=False)
    for body, name in ((b"1", names[0]), (b"2", names[0]), (b"3", names[1]), (b"4", names[1])):
        ch.basic_publish("", name, body)
    # One of the four is delivered and left unacknowledged: 3 ready, 1 unacked.
    assert get_message(ch, names[1])[2] == b"3"

    expected = {"Ready": ready0 + 3, "Unacked": unacked0 + 1, "Total": ready0 + unacked0 + 4,
                "Queues": queues0 + 2}
    ui.wait(lambda: all(ui.card("totals", k) == f"{v:,}" for k, v in expected.items()),
            f"the totals {expected} (periodic refresh)", REFRESH_WAIT)
    # Connections and channels (others may still be closing): what the API says, at least ours.
    now = {}

    def objects_match():
        now.update(api(warren, "GET", "/overview")[1])
        totals = now["object_totals"]
        return all(ui.card("totals", label) == f"{totals[key]:,}" and totals[key] >= 1
                   for label, key in (("Connections", "connections"), ("Channels", "channels"),
                                      ("Exchanges", "exchanges")))
    ui.wait(objects_match, "the Connections/Channels/Exchanges cards as in /api/overview",
            REFRESH_WAIT)

    # Message rates: every card, each a rate.
    rates = ui.js("return [...document.querySelectorAll('#rates .card')]"
                  ".map(c => [c.querySelector('.k').textContent, c.querySelector('.v').textContent])")
    assert [k for k, _ in rates] == ["Publish", "Confirm", "Deliver / get", "Redelivered", "Ack"]
    for _, value in rates:
        assert re.fullmatch(r"[0-9][0-9,]*(\.[0-9])?/s", value), value

    # Node: the listeners are the ones the broker printed.
    node = ui.js("return [...document.querySelector('#content table tbody tr').cells]"
                 ".map(c => c.innerText.trim())")
    assert node[0] == now["node"]
    listeners = set(node[2].splitlines())
    printed = {"amqp": LISTEN_RE, "http": HTTP_RE, "http/prometheus": PROMETHEUS_RE}
    for protocol, regex in printed.items():
        match = next(m for m in map(regex.search, warren.lines) if m)
        assert f"{protocol} {match.group(1)}:{match.group(2)}" in listeners, (protocol, listeners)
    assert node[1].startswith(f"Warren {now['product_version']} (RabbitMQ ")

    # Screenshot: a PNG exactly the size of the viewport, saved, with content.
    png = ui.d.get_screenshot_as_png()
    shot = tmp_path / "overview.png"
    shot.write_bytes(png)
    assert shot.stat().st_size > 20_000, "screenshot too small to show the overview"
    width, height, rows = png_decode(shot.read_bytes())
    viewport = ui.js("return [innerWidth * devicePixelRatio, innerHeight * devicePixelRatio]")
    assert [width, height] == viewport and width == WINDOW[0] and 0 < height <= WINDOW[1]
    colours = collections.Counter(px for row in rows for px in row)
    assert len(colours) > 50, f"screenshot has only {len(colours)} colours"
    assert colours.most_common(1)[0][0] == (248, 250, 252), "page background is not #f8fafc"
    assert (255, 255, 255) in colours, "no white (header, cards, tables)"
    assert any(sum(px) < 200 for px in colours), "no dark text"
    # The header's 3 px accent border (#e8590c), full width, right under it.
    # (Up to the page's width: a vertical scrollbar may take the right edge.)
    bottom = round(ui.js("return document.querySelector('header').getBoundingClientRect().bottom"))
    page_width = ui.js("return document.documentElement.clientWidth")
    assert page_width > WINDOW[0] - 30
    for y in range(bottom - 3, bottom):
        assert set(rows[y][:page_width]) == {(232, 89, 12)}, f"row {y} is not the accent line"
    assert (232, 89, 12) not in rows[bottom] and (232, 89, 12) not in rows[bottom - 4]


def test_queues(ui, warren, open_connection):
    name = f"ui-queues.{_uid()}"
    conn = open_connection(params(warren))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(name)
    for i in range(3):
        ch.basic_publish("", name, f"ui-payload-{i}".encode())

    ui.tab("Queues")
    ui.wait(lambda: (ui.queue_row(name) or [None] * 8)[5:8] == ["3", "0", "3"],
            f"{name} with 3 ready, 0 unacked, 3 total")
    row = ui.queue_row(name)
    assert row[:5] == ["/", name, "classic", "", "running"]

    # Get: the payloads, requeued.
    ui.click_row_button("Get", name, queue=True)
    ui.wait(lambda: "ui-payload-2" in ui.d.find_element(By.ID, "got").text, "the fetched messages")
    got = ui.d.find_element(By.ID, "got")
    assert got.find_element(By.TAG_NAME, "h2").text == f"Messages in {name}"
    shown = [p.text for p in got.find_elements(By.TAG_NAME, "pre")]
    assert len(shown) == 3
    for i, text in enumerate(shown):
        assert text.startswith(f"#{i + 1} routing key {name}, 12 bytes")
        assert text.endswith(f"ui-payload-{i}")
    eventually(lambda: api(warren, "GET", f"/queues/%2F/{q(name)}")[1]["messages_ready"] == 3)

    # Purge.
    ui.expect_message(lambda: ui.click_row_button("Purge", name, queue=True), "Queue purged")
    ui.wait(lambda: (ui.queue_row(name) or [None] * 8)[5:8] == ["0", "0", "0"],
            f"{name} empty after the purge")
    status, info = api(warren, "GET", f"/queues/%2F/{q(name)}")
    assert status == 200 and info["messages"] == 0
    assert ch.queue_declare(name, passive=True).method.message_count == 0

    # Add queue (not durable).
    added = f"ui-added.{_uid()}"
    ui.expect_message(lambda: ui.submit("addQueue", {"name": added, "durable": "false"}),
                      f"Queue {added} added")
    status, info = api(warren, "GET", f"/queues/%2F/{q(added)}")
    assert status == 200 and info["name"] == added and info["durable"] is False
    ui.wait(lambda: ui.queue_row(added), f"{added} in the table")
    assert ch.queue_declare(added, passive=True).method.message_count == 0

    # Delete, after the confirm dialog.
    ui.click_row_button("Delete", added, queue=True)
    ui.confirm(f"Delete queue {added}?")
    ui.wait(lambda: ui.queue_row(added) is None and ui.queue_row(name),
            f"{added} gone from the table")
    assert api(warren, "GET", f"/queues/%2F/{q(added)}")[0] == 404
    api(warren, "DELETE", f"/queues/%2F/{q(name)}")


def test_queue_with_awkward_name(ui, warren, open_connection):
    """Names are shown as text (no markup) and quotes do not break the row's buttons."""
    name = f"ui it's <b>\"odd\"</b> & {_uid()}"
    ch = open_connection(params(warren)).channel()
    ch.confirm_delivery()
    ch.queue_declare(name)
    ch.basic_publish("", name, b"<i>payload</i>")

    ui.tab("Queues")
    ui.wait(lambda: (ui.queue_row(name) or [None] * 6)[1:6:4] == [name, "1"],
            "the queue, its name as text, 1 ready")
    assert not ui.d.find_elements(By.CSS_SELECTOR, "#content td b, #content td i")

    ui.click_row_button("Get", name, queue=True)
    ui.wait(lambda: ui.d.find_element(By.ID, "got").text.endswith("<i>payload</i>"),
            "the payload, as text")
    # Its page: reached through its link (the name percent-encoded in the address), the name
    # shown as text; deleted from there (back to the list).
    ui.js("""[...document.querySelectorAll('#content tr[data-queue]')].find(r => r.dataset.queue === arguments[0])
             .querySelector('a').click()""", name)
    ui.wait(lambda: ui.js("return document.getElementById('content').dataset.ready") == f"queue / {name}",
            "the queue's page")
    assert ui.d.find_element(By.CSS_SELECTOR, "#detail-title b").text == name
    assert not ui.d.find_elements(By.CSS_SELECTOR, "#content h2 b b, #content h2 b i")
    ui.on("content", lambda e: e.find_element(By.XPATH, ".//button[text()='Delete queue']").click())
    ui.confirm(f"Delete queue {name}?")
    ui.wait_tab("Queues")
    ui.wait(lambda: ui.queue_row(name) is None, "the queue gone from the table")
    assert api(warren, "GET", f"/queues/%2F/{q(name)}")[0] == 404


def test_exchanges(ui, warren, open_connection):
    exchange, queue = f"ui-x.{_uid()}", f"ui-xq.{_uid()}"
    ch = open_connection(params(warren)).channel()
    ch.queue_declare(queue)

    ui.tab("Exchanges")
    ui.expect_message(lambda: ui.submit("addExchange", {"name": exchange, "type": "topic",
                                                        "durable": "false"}),
                      f"Exchange {exchange} added")
    status, info = api(warren, "GET", f"/exchanges/%2F/{q(exchange)}")
    assert status == 200 and (info["type"], info["durable"]) == ("topic", False)
    ui.wait(lambda: (ui.row(exchange, 1) or [None] * 4)[2:4] == ["topic", ""],
            f"{exchange} (topic, not durable) in the table")

    ui.expect_message(lambda: ui.submit("addBinding", {"src": exchange, "dst": queue,
                                                       "rk": "ui.*"}), "Binding added")
    ui.wait(lambda: ui.row(exchange, 1) and
            ui.js("""return [...document.querySelectorAll('#content tbody tr')].some(r =>
                       [...r.cells].map(c => c.textContent).join('|') === arguments[0])""",
                  f"/|{exchange}|queue {queue}|ui.*"),
            "the binding in the Bindings table")
    _, bindings = api(warren, "GET", f"/bindings/%2F/e/{q(exchange)}/q/{q(queue)}")
    assert [b["routing_key"] for b in bindings] == ["ui.*"]

    ui.expect_message(lambda: ui.submit("publishTo", {"exchange": exchange, "rk": "ui.hello",
                                                      "payload": "from the browser"}),
                      "Message published")
    _, _, body = get_message(ch, queue, auto_ack=True)
    assert body == b"from the browser"

    ui.expect_message(lambda: ui.submit("publishTo", {"exchange": exchange, "rk": "other",
                                                      "payload": "lost"}),
                      "Message published, but not routed")
    # The default exchange (empty Exchange field) routes by queue name.
    ui.expect_message(lambda: ui.submit("publishTo", {"exchange": "", "rk": queue,
                                                      "payload": "direct"}),
                      "Message published")
    _, _, body = get_message(ch, queue, auto_ack=True)
    assert body == b"direct"
    assert ch.basic_get(queue, auto_ack=True)[0] is None, "the unroutable message arrived"

    ui.click_row_button("Delete", exchange, col=1)
    ui.confirm(f"Delete exchange {exchange}?")
    ui.wait(lambda: ui.row(exchange, 1) is None, f"{exchange} gone from the table")
    assert api(warren, "GET", f"/exchanges/%2F/{q(exchange)}")[0] == 404
    api(warren, "DELETE", f"/queues/%2F/{q(queue)}")


def test_connections_and_channels(ui, warren, open_connection):
    label = f"ui-conn.{_uid()}"
    conn = open_connection(params(warren, client_properties={"connection_name": label}))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_qos(prefetch_count=7)

    def listed():
        _, conns = api(warren, "GET", "/connections")
        return next((c["name"] for c in conns
                     if c.get("client_properties", {}).get("connection_name") == label), None)
    name = eventually(listed)

    ui.tab("Connections")
    ui.wait(lambda: (ui.row(name) or [None] * 6)[1:6] == ["guest", "/", "running", "", "1"],
            f"the connection {name} (guest, /, running, 1 channel)")

    ui.tab("Channels")
    ui.wait(lambda: (ui.row(f"{name} (1)") or [None] * 6)[1:6] == ["guest", "confirm", "7",
                                                                   "0", "0"],
            "its channel (guest, confirm mode, prefetch 7)")

    ui.tab("Connections")
    ui.wait(lambda: ui.row(name), "the connection again")
    ui.expect_message(lambda: ui.click_row_button("Close", name), "Connection closed")
    ui.wait(lambda: ui.row(name) is None, "the connection gone from the table", REFRESH_WAIT)
    assert listed() is None

    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        eventually(lambda: conn.process_data_events(time_limit=0.05), timeout=WAIT)
    assert closed.value.reply_code == 320


def test_admin_users_permissions_vhosts(ui, warren, open_connection):
    user, password, vhost = f"ui-user-{_uid()}", f"pw-{_uid()}", f"ui-vhost-{_uid()}"
    hidden = f"ui-hidden.{_uid()}"      # a queue the new user may not read
    open_connection(params(warren)).channel().queue_declare(hidden)

    ui.tab("Admin")
    ui.expect_message(lambda: ui.submit("addUser", {"name": user, "password": password,
                                                    "tags": "management, monitoring"}),
                      f"User {user} added")
    ui.wait(lambda: ui.row(user) == [user, "management, monitoring", "Delete"],
            f"{user} with its tags in the Users table")
    status, info = api(warren, "GET", f"/users/{q(user)}")
    assert status == 200 and info["tags"] == ["management", "monitoring"]

    # No permissions yet: the AMQP login is refused.
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        open_connection(params(warren, user, password))

    perms = {"configure": "^ui-perm\\.", "write": ".*", "read": "^ui-(perm|read)\\."}
    ui.expect_message(lambda: ui.submit("setPerm", {"user": user, "vhost": "/", **perms}),
                      "Permission set")
    ui.wait(lambda: [user, "/", *perms.values()] in ui.rows(user),
            "the permission in the Permissions table")
    _, perm = api(warren, "GET", f"/permissions/%2F/{q(user)}")
    assert {k: perm[k] for k in perms} == perms

    conn = open_connection(params(warren, user, password))
    ch = conn.channel()
    own = f"ui-perm.{_uid()}"
    ch.queue_declare(own, auto_delete=True)
    ch.basic_publish("", own, b"as " + user.encode())
    assert get_message(ch, own, auto_ack=True)[2] == b"as " + user.encode()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        ch.queue_declare(f"elsewhere.{_uid()}")
    assert refused.value.reply_code == 403      # the configure expression applies
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        ch.basic_get(hidden, auto_ack=True)
    assert refused.value.reply_code == 403      # so does the read expression
    conn.close()

    # Virtual hosts: add, then delete after the confirm dialog.
    ui.expect_message(lambda: ui.submit("addVhost", {"name": vhost}),
                      f"Virtual host {vhost} added")
    ui.wait(lambda: (ui.row(vhost) or [None])[0] == vhost, f"{vhost} in the table")
    assert api(warren, "GET", f"/vhosts/{q(vhost)}")[0] == 200
    ui.click_row_button("Delete", vhost)
    ui.confirm(f"Delete virtual host {vhost}?")
    ui.wait(lambda: ui.row(vhost) is None and ui.row(user), f"{vhost} gone from the table")
    assert api(warren, "GET", f"/vhosts/{q(vhost)}")[0] == 404

    # The new user (a management user) can use the UI; its Admin tab is refused.
    ui.fresh()
    ui.login_ok(user, password)
    ui.d.find_element(By.CSS_SELECTOR, "nav button[data-tab='Admin']").click()
    ui.wait(lambda: ui.d.find_element(By.ID, "content").text == "Not administrator user",
            "'Not administrator user' on the Admin tab")

    assert api(warren, "DELETE", f"/users/{q(user)}")[0] == 204
    api(warren, "DELETE", f"/queues/%2F/{q(hidden)}")


def test_definitions_download_and_upload(ui, warren, downloads, open_connection, tmp_path):
    queue = f"ui-defs.{_uid()}"
    ch = open_connection(params(warren)).channel()
    ch.queue_declare(queue, durable=True)
    _, expected = api(warren, "GET", "/definitions")
    assert queue in [x["name"] for x in expected["queues"]]

    for old in downloads.iterdir():
        old.unlink()
    target = downloads / "warren-definitions.json"

    def downloaded():
        if not target.is_file() or any(f.suffix == ".crdownload" for f in downloads.iterdir()):
            return None
        try:
            return json.loads(target.read_text())
        except ValueError:
            return None     # still being written
    ui.on("export", lambda e: e.click())
    got = ui.wait(downloaded, f"{target.name} in the download directory")
    assert [f.name for f in downloads.iterdir()] == [target.name]
    for key in ("users", "vhosts", "permissions", "exchanges", "queues", "bindings"):
        assert got[key] == expected[key], key
    assert got["product_name"] == "Warren"

    # Upload: a queue that does not exist yet.
    new_queue = f"ui-imported.{_uid()}"
    upload = tmp_path / "import.json"
    upload.write_text(json.dumps({"queues": [
        {"name": new_queue, "vhost": "/", "durable": True, "auto_delete": False,
         "arguments": {}}]}))
    ui.expect_message(lambda: ui.on("import", lambda e: e.send_keys(str(upload))),
                      "Definitions imported")
    status, info = api(warren, "GET", f"/queues/%2F/{q(new_queue)}")
    assert status == 200 and info["durable"] is True
    for name in (queue, new_queue):
        api(warren, "DELETE", f"/queues/%2F/{q(name)}")


# --------------------------------------------------------------------------
# Charts, detail pages, badges, lists (issue 22 item 9)
# --------------------------------------------------------------------------

CHART_WAIT = 16.0       # a 5 s sample, then the page's 5 s refresh, with slack
AMBER, BLUE, RED = (245, 159, 0), (28, 126, 214), (201, 42, 42)   # #f59f00 #1c7ed6 #c92a2a


def line_above_zero(ui, chart, series):
    """Whether chart ``chart``'s line ``series`` has a point above the plot's
    bottom edge (a value above zero), in the DOM."""
    return ui.js("""
        const s = document.querySelector(`svg.chart[data-chart='${arguments[0]}']`);
        const l = s && s.querySelector(`polyline[data-series='${arguments[1]}']`);
        if (!l) return false;
        const r = s.querySelector('rect.plot'), bottom = r.y.baseVal.value + r.height.baseVal.value;
        return [...l.points].some(p => p.y < bottom - 3);""", chart, series)


def chart_pixels(ui, chart, colours, tolerance=40):
    """Screenshot chart ``chart`` (the SVG element only), decode it and count,
    per colour, the pixels of that colour inside the plot area but above its
    bottom 4 px rows: a line drawn there stands for a value above zero."""
    svg = ui.d.find_element(By.CSS_SELECTOR, f"svg.chart[data-chart='{chart}']")
    x0, y0, w, h = (round(v) for v in ui.js(
        "const r = arguments[0].querySelector('rect.plot');"
        "return [r.x.baseVal.value, r.y.baseVal.value, r.width.baseVal.value, r.height.baseVal.value]", svg))
    width, height, rows = png_decode(svg.screenshot_as_png)
    assert (width, height) == (svg.size["width"], svg.size["height"])
    counts = dict.fromkeys(colours, 0)
    for y in range(y0 + 2, y0 + h - 4):
        for x in range(x0 + 2, x0 + w - 2):
            px = rows[y][x]
            for c in colours:
                if all(abs(a - b) <= tolerance for a, b in zip(px, c)):
                    counts[c] += 1
    return counts


def test_overview_charts_show_traffic(ui, warren, open_connection, tmp_path):
    ch = open_connection(params(warren)).channel()
    ch.confirm_delivery()
    name = f"ui-chart.{_uid()}"
    ch.queue_declare(name, auto_delete=False)
    for i in range(20):
        ch.basic_publish("", name, b"chart %d" % i)
    assert ui.js("return document.querySelector('#content svg.chart[data-chart=rates]') !== null")
    legend = ui.js("return [...document.querySelectorAll('#content [data-legend]')].map(e => e.textContent)")
    assert "Publish" in legend and "Consumer ack" in legend and "Ready" in legend
    # This test's 20 messages in the depth chart's scale (sampled after they were published),
    # and lines above zero in both charts.
    ui.wait(lambda: float(ui.js("return document.querySelector('svg.chart[data-chart=depth]').dataset.max")) >= 20
            and line_above_zero(ui, "rates", "publish") and line_above_zero(ui, "depth", "ready"),
            "20 more ready messages and the publish rate in the charts", CHART_WAIT)
    rates = chart_pixels(ui, "rates", [AMBER])
    assert rates[AMBER] >= 10, f"publish line ({rates[AMBER]} amber pixels) not drawn above zero"
    depth = chart_pixels(ui, "depth", [AMBER, RED])
    assert depth[AMBER] >= 10, f"ready line ({depth[AMBER]} amber pixels) not drawn above zero"
    (tmp_path / "overview-charts.png").write_bytes(ui.d.get_screenshot_as_png())
    api(warren, "DELETE", f"/queues/%2F/{q(name)}")


def test_queue_badges_and_detail_page(ui, warren, open_connection):
    name = f"ui-detail.{_uid()}"
    args = {"x-message-ttl": 60000, "x-max-length": 1000, "x-dead-letter-exchange": "amq.fanout",
            "x-max-priority": 5, "x-single-active-consumer": True}
    conn = open_connection(params(warren))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(name, durable=True, arguments=args)
    ch.queue_bind(name, "amq.topic", "ui.detail.#")
    for i in range(4):
        ch.basic_publish("", name, b"detail %d" % i)
    consumer = open_connection(params(warren)).channel()
    consumer.basic_qos(prefetch_count=1)
    tag = consumer.basic_consume(name, lambda *a: None)

    ui.tab("Queues")
    ui.wait(lambda: (ui.queue_row(name) or [None] * 8)[5:8] == ["3", "1", "4"],
            f"{name} with 3 ready, 1 unacked")
    badges = ui.js("""return [...document.querySelectorAll('#content tr[data-queue] abbr.badge')]
        .filter(b => b.closest('tr').dataset.queue === arguments[0]).map(b => [b.textContent, b.title])""", name)
    assert badges == [["D", "durable: true"], ["TTL", "x-message-ttl: 60000"], ["Lim", "x-max-length: 1000"],
                      ["DLX", 'x-dead-letter-exchange: "amq.fanout"'], ["Pri", "x-max-priority: 5"],
                      ["SAC", "x-single-active-consumer: true"]]

    # The name links to the queue's page.
    ui.js("""[...document.querySelectorAll('#content tr[data-queue]')].find(r => r.dataset.queue === arguments[0])
             .querySelector('a').click()""", name)
    ui.wait(lambda: ui.js("return document.getElementById('content').dataset.ready") == f"queue / {name}"
            and ui.d.find_element(By.ID, "detail-title").text.startswith(f"Queue {name}"), "the queue's page")
    assert ui.js("return location.hash") == f"#Queues/%2F/{urllib.parse.quote(name, safe='')}"
    text = ui.d.find_element(By.ID, "content").text
    for expected in ("x-message-ttl: 60000", "x-dead-letter-exchange: \"amq.fanout\"", tag,
                     "(Default exchange binding)", "ui.detail.#", "4 total, 3 ready, 1 unacked"):
        assert expected in text, expected

    # Publish from the page (default exchange, the queue's name), then get 2 with automatic ack.
    ui.expect_message(lambda: ui.submit("publishMessage", {"payload": "from the queue page",
                                                           "delivery_mode": "2"}),
                      "Message published")
    eventually(lambda: api(warren, "GET", f"/queues/%2F/{q(name)}")[1]["messages_ready"] == 4)
    ui.submit("getForm", {"ackmode": "ack_requeue_false", "count": "2"})
    ui.wait(lambda: len(ui.d.find_elements(By.CSS_SELECTOR, "#got pre")) == 2, "two fetched messages")
    assert ui.d.find_element(By.CSS_SELECTOR, "#got pre").text.endswith("detail 1")
    eventually(lambda: api(warren, "GET", f"/queues/%2F/{q(name)}")[1]["messages_ready"] == 2)

    # The depth chart: ready, unacked (the consumer's one) and total all above zero.
    ui.wait(lambda: all(line_above_zero(ui, "queue-depth", s) for s in ("ready", "unacked", "total")),
            "the queue's depth chart with ready, unacked and total above zero", CHART_WAIT)
    pixels = chart_pixels(ui, "queue-depth", [AMBER, BLUE, RED])
    assert all(n >= 10 for n in pixels.values()), pixels
    consumer.basic_cancel(tag)
    api(warren, "DELETE", f"/queues/%2F/{q(name)}")


def test_exchange_detail_page(ui, warren, open_connection):
    exchange, queue = f"ui-xd.{_uid()}", f"ui-xdq.{_uid()}"
    ch = open_connection(params(warren)).channel()
    ch.exchange_declare(exchange, "topic", durable=True)
    ch.queue_declare(queue)
    ch.queue_bind(queue, exchange, "a.#")
    ui.tab("Exchanges")
    ui.wait(lambda: ui.row(exchange, 1), f"{exchange} in the table")
    assert ui.js("""return [...document.querySelectorAll('#content tr[data-exchange] abbr.badge')]
        .filter(b => b.closest('tr').dataset.exchange === arguments[0]).map(b => b.title)""", exchange) == ["durable: true"]
    ui.js("""[...document.querySelectorAll('#content tr[data-exchange]')].find(r => r.dataset.exchange === arguments[0])
             .querySelector('a').click()""", exchange)
    ui.wait(lambda: ui.js("return document.getElementById('content').dataset.ready") == f"exchange / {exchange}",
            "the exchange's page")
    assert ui.row(f"queue {queue}")[:2] == [f"queue {queue}", "a.#"]
    ui.expect_message(lambda: ui.submit("publishMessage", {"rk": "a.b", "payload": "via the page"}),
                      "Message published")
    assert get_message(ch, queue, auto_ack=True)[2] == b"via the page"
    ui.expect_message(lambda: ui.submit("bindFrom", {"kind": "q", "dst": queue, "rk": "z"}), "Binding added")
    ui.wait(lambda: len(ui.rows(f"queue {queue}")) == 2, "the new binding listed")
    api(warren, "DELETE", f"/exchanges/%2F/{q(exchange)}")
    api(warren, "DELETE", f"/queues/%2F/{q(queue)}")


def retype(element, keys):
    """Replace an input's text as a user does (select all, type): unlike
    ``clear()``, no change event for the intermediate empty value."""
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(keys)


def test_queue_list_filter_pagination_and_vhost(ui, warren, open_connection):
    prefix = f"ui-page-{_uid()}"
    vhost = f"ui-vh-{_uid()}"
    ch = open_connection(params(warren)).channel()
    for suffix in ("a", "b", "c"):
        ch.queue_declare(f"{prefix}.{suffix}")
    assert api(warren, "PUT", f"/vhosts/{q(vhost)}")[0] == 201
    assert api(warren, "PUT", f"/permissions/{q(vhost)}/guest",
               {"configure": ".*", "write": ".*", "read": ".*"})[0] in (201, 204)
    other = f"{prefix}.elsewhere"
    open_connection(params(warren, vhost=vhost)).channel().queue_declare(other)

    ui.tab("Queues")
    names = lambda: ui.js("return [...document.querySelectorAll('#content tr[data-queue]')].map(r => r.dataset.queue)")
    ui.on("filter-Queues", lambda e: e.send_keys(prefix))
    ui.wait(lambda: names() == [f"{prefix}.a", f"{prefix}.b", f"{prefix}.c", other], "the 4 matching queues")
    assert ui.js("return document.activeElement.id") == "filter-Queues", "the filter lost the focus"
    ui.on("size-Queues", lambda e: retype(e, "3\n"))
    ui.wait(lambda: names() == [f"{prefix}.a", f"{prefix}.b", f"{prefix}.c"], "page 1 of 2")
    assert ui.d.find_element(By.ID, "count-Queues").text.startswith("Displaying 3 of 4 items (")
    ui.on("page-Queues", lambda e: Select(e).select_by_visible_text("2"))
    ui.wait(lambda: names() == [other], "page 2")
    # A regular expression.
    ui.on("regex-Queues", lambda e: e.click())
    ui.on("filter-Queues", lambda e: retype(e, f"^{prefix}\\.(a|c)$"))
    ui.wait(lambda: names() == [f"{prefix}.a", f"{prefix}.c"], "the regex's 2 queues")
    # The vhost selector: only that vhost's queues.
    ui.on("filter-Queues", lambda e: retype(e, Keys.BACKSPACE))
    ui.on("regex-Queues", lambda e: e.click())
    ui.on("vhost-select", lambda e: Select(e).select_by_value(vhost))
    ui.wait(lambda: names() == [other], f"only the queue of {vhost}")
    assert ui.row(vhost)[1] == other
    ui.on("vhost-select", lambda e: Select(e).select_by_value(""))
    ui.on("size-Queues", lambda e: retype(e, "100\n"))
    ui.wait(lambda: f"{prefix}.a" in names(), "every vhost again")
    api(warren, "DELETE", f"/vhosts/{q(vhost)}")
    for suffix in ("a", "b", "c"):
        api(warren, "DELETE", f"/queues/%2F/{q(prefix + '.' + suffix)}")


def test_refresh_interval_selector(ui):
    select = lambda: Select(ui.d.find_element(By.ID, "refresh-select"))
    assert select().first_selected_option.text == "Refresh every 5 seconds"
    assert [o.text for o in select().options] == ["Refresh every 5 seconds", "Refresh every 10 seconds",
                                                  "Refresh every 30 seconds", "Do not refresh"]
    try:
        select().select_by_value("0")
        assert ui.js("return timer === null && localStorage.getItem('warren-refresh') === '0'")
        # Kept across a reload.
        ui.d.refresh()
        ui.wait(lambda: ui.visible("app"), "the app after a reload")
        assert select().first_selected_option.text == "Do not refresh"
        assert ui.js("return timer === null")
        select().select_by_value("10")
        assert ui.js("return timer !== null && localStorage.getItem('warren-refresh') === '10'")
    finally:
        ui.js("localStorage.removeItem('warren-refresh'); localStorage.removeItem('warren-chart-range')")


def test_move_messages_and_the_shovels_tab(ui, warren, open_connection):
    """The queue page's "Move messages" (a dead-letter queue back to its source) and the Shovels
    tab: add, see it running, delete."""
    dlq, back = f"ui-dlq.{_uid()}", f"ui-work.{_uid()}"
    conn = open_connection(params(warren))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(dlq, durable=True)
    ch.queue_declare(back, durable=True)
    for i in range(3):
        ch.basic_publish("", dlq, b"failed %d" % i)
    ui.open_queue(dlq)
    ui.expect_message(lambda: ui.submit("moveMessages", {"dest": back}), f"Moving messages to {back}")
    eventually(lambda: api(warren, "GET", f"/queues/%2F/{q(back)}")[1]["messages"] == 3, timeout=10)
    assert api(warren, "GET", f"/queues/%2F/{q(dlq)}")[1]["messages"] == 0
    # The shovel deleted itself once the queue's messages were moved.
    eventually(lambda: api(warren, "GET", f"/parameters/shovel/%2F/{q('Move from ' + dlq)}")[0] == 404, timeout=10)
    assert [m.decode() for m in (get_message(ch, back, auto_ack=True)[2] for _ in range(3))] == [
        "failed 0", "failed 1", "failed 2"]

    name = f"ui-shovel-{_uid()}"
    ui.tab("Shovels")
    ui.expect_message(lambda: ui.submit("addShovel", {"name": name, "src_queue": dlq, "dest_queue": back}),
                      f"Shovel {name} added")
    ui.wait(lambda: (ui.row(name, 1) or [None] * 3)[2] == "running", f"shovel {name} running", REFRESH_WAIT)
    ch.basic_publish("", dlq, b"later")
    eventually(lambda: api(warren, "GET", f"/queues/%2F/{q(back)}")[1]["messages"] == 1, timeout=10)
    ui.click_row_button("Delete", name, 1)
    ui.confirm(f"Delete shovel {name}?")
    ui.wait(lambda: ui.row(name, 1) is None, f"shovel {name} gone")
    assert api(warren, "GET", f"/parameters/shovel/%2F/{q(name)}")[0] == 404
    for queue in (dlq, back):
        api(warren, "DELETE", f"/queues/%2F/{q(queue)}")


def test_streams_tab(ui, warren):
    """The Streams tab: a stream protocol client's connection (with the name it gave), its
    publisher and consumer with their counts, and the stream with its log; a connection that
    closes leaves the tab at the next periodic refresh."""
    addr = StreamAddr(warren.host, warren.stream_port, "/", "guest", "guest")
    stream, client_name = f"ui-stream-{_uid()}", f"ui-client-{_uid()}"
    assert api(warren, "PUT", f"/queues/%2F/{q(stream)}",
               {"durable": True, "arguments": {"x-queue-type": "stream"}})[0] == 201

    def row(kind):
        """Cells of the tab's row for ``stream`` in the table of ``kind`` (its data- attribute)."""
        return ui.js("""
            const r = [...document.querySelectorAll('#content tr[data-' + arguments[0] + ']')]
                .find(r => r.getAttribute('data-' + arguments[0]) === arguments[1]);
            return r ? [...r.cells].map(c => c.innerText.trim()) : null;""", kind, stream)

    async def scenario():
        client = await open_client(addr, name=client_name)
        confirms, inbox = Confirms(), Inbox()
        try:
            async with make_producer(addr) as producer, make_consumer(addr) as consumer:
                await producer.send_batch(stream, [b"a", b"b", b"c"], on_publish_confirm=confirms)
                await confirms.wait(3)
                await consumer.subscribe(stream, inbox, offset_specification=spec(OffsetType.FIRST))
                await wait_until(lambda: len(inbox) >= 3, what="3 messages")
                # The browser is driven from here, the clients' connections open meanwhile.
                ui.tab("Streams")
                ui.wait(lambda: (ui.row(client_name, 1) or [None] * 3)[2] == "guest",
                        f"the stream connection {client_name}", REFRESH_WAIT)
                ui.wait(lambda: (row("stream-publisher") or [None] * 6)[5] == "3",
                        "the publisher with 3 published", REFRESH_WAIT)
                ui.wait(lambda: (row("stream-consumer") or [None] * 8)[7] == "3",
                        "the consumer with 3 consumed", REFRESH_WAIT)
                cells = row("stream")
                assert cells[:3] == ["/", stream, "3"] and cells[4:6] == ["0", "2"], cells
        finally:
            await client.close()

    run(scenario())
    ui.wait(lambda: ui.row(client_name, 1) is None and row("stream-publisher") is None,
            "the closed connections gone after a refresh", REFRESH_WAIT)
    api(warren, "DELETE", f"/queues/%2F/{q(stream)}")


def test_peek_and_reset_from_the_ui(ui, warren, open_connection):
    """The queue page's "Peek" shows messages without taking them; the Admin tab's "Reset"
    empties a vhost (after a confirm); without --test-controls the test-controls section says
    how to get them."""
    name = f"ui-peek.{_uid()}"
    conn = open_connection(params(warren))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(name)
    for i in range(2):
        ch.basic_publish("", name, b"peeked %d" % i)
    ui.open_queue(name)
    ui.on("peek", lambda e: e.click())
    ui.wait(lambda: len(ui.d.find_elements(By.CSS_SELECTOR, "#got pre")) == 2, "two peeked messages")
    assert ui.d.find_elements(By.CSS_SELECTOR, "#got pre")[1].text.endswith("peeked 1")
    assert api(warren, "GET", f"/queues/%2F/{q(name)}")[1]["messages_ready"] == 2, "peek took nothing"

    vhost = f"ui-reset-{_uid()}"
    assert api(warren, "PUT", f"/vhosts/{q(vhost)}")[0] == 201
    api(warren, "PUT", f"/permissions/{q(vhost)}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
    assert api(warren, "PUT", f"/queues/{q(vhost)}/leftover", {"durable": True})[0] == 201
    ui.tab("Admin")
    assert ui.d.find_element(By.ID, "test-controls-off").text.endswith("--test-controls.")
    ui.click_row_button("Reset", vhost)
    ui.confirm(f"Reset virtual host {vhost}? Its queues, exchanges, policies, shovels and messages are "
               "deleted and its connections closed.")
    eventually(lambda: api(warren, "GET", f"/queues/{q(vhost)}/leftover")[0] == 404)
    assert api(warren, "GET", f"/vhosts/{q(vhost)}")[0] == 200
    api(warren, "DELETE", f"/vhosts/{q(vhost)}")
    api(warren, "DELETE", f"/queues/%2F/{q(name)}")


def test_message_trace_timeline(ui, warren, open_connection):
    """The Overview's "Message trace": the timeline of a message found by its message id."""
    name, mid = f"ui-trace.{_uid()}", f"order-{_uid()}"
    conn = open_connection(params(warren))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(name)
    ch.basic_publish("", name, b"traced", pika.BasicProperties(message_id=mid))
    get_message(ch, name, auto_ack=True)
    ui.tab("Overview")
    ui.submit("traceMessage", {"by": "message_id", "value": mid})
    ui.wait(lambda: ui.js(
        "return [...document.querySelectorAll('#got tbody tr td:nth-child(2)')].map(c => c.textContent)")
        == ["published", "got"], "the published and got events")
    assert f"to {name}" in ui.d.find_element(By.ID, "got").text
    api(warren, "DELETE", f"/queues/%2F/{q(name)}")
