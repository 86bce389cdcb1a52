"""Exchanges and routing: topic matching, bindings with arguments, headers
values as pika encodes them, alternate exchanges, CC/BCC sender-selected
distribution, exchange-to-exchange bindings, internal and auto-delete
exchanges, and the errors of exchange.declare/delete/bind.

Every expectation was checked against RabbitMQ 3.10.  "Nothing arrived" is
established without timers: after the messages under test a marker is
published on the same channel straight to each queue (default exchange);
RabbitMQ keeps one channel's messages in order per queue, so once the marker
comes out of a queue, everything published before it has been routed.
"""

import datetime
import decimal

import pika
import pika.compat
import pika.exceptions
import pytest

from conftest import channel_error, eventually, get_message

MARKER = b"--marker--"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def declare_exchange(channel, unique_name, exchange_type, kind="x", **options):
    """Declare a fresh transient exchange (deleted after the test)."""
    name = unique_name(kind)
    channel.exchange_declare(name, exchange_type, durable=False, **options)
    return name


def declare_queue(channel, unique_name, kind="q"):
    name = unique_name(kind)
    channel.queue_declare(name)
    return name


def drain_up_to_marker(channel, *queues):
    """Publish a marker to each queue on ``channel`` (the channel the messages
    under test went out on) and basic.get until it comes out.  Returns, per
    queue, the bodies that preceded the marker."""
    for queue in queues:
        channel.basic_publish("", queue, MARKER)
    result = []
    for queue in queues:
        bodies = []
        while True:
            _, _, body = get_message(channel, queue, auto_ack=True)
            if body == MARKER:
                break
            bodies.append(body.decode())
        result.append(bodies)
    return result


def messages_up_to_marker(channel, queue):
    """Like drain_up_to_marker for one queue, with (method, properties, body)."""
    channel.basic_publish("", queue, MARKER)
    out = []
    while True:
        method, props, body = get_message(channel, queue, auto_ack=True)
        if body == MARKER:
            return out
        out.append((method, props, body))


def routing_table(channel, unique_name, exchange_type, bindings, messages):
    """One exchange, one queue per binding ``{name: (key, arguments)}``; one
    message per entry of ``messages`` ``{name: (key, headers)}`` with its name
    as body.  Returns ``{binding name: [names of the messages it got]}``."""
    exchange = declare_exchange(channel, unique_name, exchange_type)
    queues = {}
    for name, (key, arguments) in bindings.items():
        queues[name] = declare_queue(channel, unique_name)
        channel.queue_bind(queues[name], exchange, key, arguments)
    for name, (key, headers) in messages.items():
        channel.basic_publish(exchange, key, name.encode(),
                              pika.BasicProperties(headers=headers))
    got = drain_up_to_marker(channel, *queues.values())
    return dict(zip(queues, got))


class Returns:
    """Records basic.return on a channel.  ``settle()`` publishes a mandatory,
    unroutable marker and waits for its return; returns arrive in order, so
    afterwards ``returned`` holds the returns of everything published before."""

    def __init__(self, connection, channel, unique_name):
        self.connection = connection
        self.channel = channel
        self.unique_name = unique_name
        self.returned = []
        self.marker_back = False
        channel.add_on_return_callback(self._on_return)

    def _on_return(self, ch, method, props, body):
        if body == MARKER:
            self.marker_back = True
        else:
            self.returned.append((method, props, body))

    def settle(self):
        self.marker_back = False
        self.channel.basic_publish("amq.direct", self.unique_name("unroutable"), MARKER,
                                   mandatory=True)
        eventually(lambda: self.marker_back, connection=self.connection)
        return self.returned


def exchange_exists(connection, name):
    ch = connection.channel()
    try:
        ch.exchange_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as err:
        assert err.reply_code == 404, err
        return False
    ch.close()
    return True


def with_headers(**headers):
    return pika.BasicProperties(headers=headers)


# --------------------------------------------------------------------------
# Topic exchange: every key against every pattern
# --------------------------------------------------------------------------

LONG_KEY = "a" * 100 + "." + "b" * 100 + "." + "c" * 53          # 255 bytes
LONG_STAR = "*." + "b" * 100 + ".*"

TOPIC_PATTERNS = [
    "*", "#", "#.#", "*.*", "a.*", "*.a", "a.#", "#.a", "a.#.b", "a.*.b",
    "a.#.#.b", "#.*", "*.#", "*.#.*", "", "a", "a..b", "a.*.*.b", ".a", "a.",
    "*.b.*", "#.b.#", ".", "..", "*.", ".*", "#.", ".#", "a.#.*", "#.#.a",
    LONG_KEY, LONG_STAR, "A", "a.b#", "a.b*", "a*.b",
]

# routing key -> the patterns (of TOPIC_PATTERNS) that match it, per RabbitMQ.
TOPIC_EXPECTED = {
    "": ["#", "#.#", ""],
    "a": ["*", "#", "#.#", "a.#", "#.a", "#.*", "*.#", "a", "#.#.a"],
    "b": ["*", "#", "#.#", "#.*", "*.#", "#.b.#"],
    "a.b": ["#", "#.#", "*.*", "a.*", "a.#", "a.#.b", "a.#.#.b", "#.*", "*.#",
            "*.#.*", "#.b.#", "a.#.*"],
    "a.c.b": ["#", "#.#", "a.#", "a.#.b", "a.*.b", "a.#.#.b", "#.*", "*.#",
              "*.#.*", "#.b.#", "a.#.*"],
    "a.c.d.b": ["#", "#.#", "a.#", "a.#.b", "a.#.#.b", "#.*", "*.#", "*.#.*",
                "a.*.*.b", "#.b.#", "a.#.*"],
    "a..b": ["#", "#.#", "a.#", "a.#.b", "a.*.b", "a.#.#.b", "#.*", "*.#",
             "*.#.*", "a..b", "#.b.#", "a.#.*"],
    ".a": ["#", "#.#", "*.*", "*.a", "#.a", "#.*", "*.#", "*.#.*", ".a", ".*",
           ".#", "#.#.a"],
    "a.": ["#", "#.#", "*.*", "a.*", "a.#", "#.*", "*.#", "*.#.*", "a.", "*.",
           "#.", "a.#.*"],
    ".": ["#", "#.#", "*.*", "#.*", "*.#", "*.#.*", ".", "*.", ".*", "#.", ".#"],
    "..": ["#", "#.#", "#.*", "*.#", "*.#.*", "..", "#.", ".#"],
    "b.a": ["#", "#.#", "*.*", "*.a", "#.a", "#.*", "*.#", "*.#.*", "#.b.#",
            "#.#.a"],
    "a.b.c": ["#", "#.#", "a.#", "#.*", "*.#", "*.#.*", "*.b.*", "#.b.#",
              "a.#.*"],
    "x.b.y": ["#", "#.#", "#.*", "*.#", "*.#.*", "*.b.*", "#.b.#"],
    "A": ["*", "#", "#.#", "#.*", "*.#", "A"],
    "a.b#": ["#", "#.#", "*.*", "a.*", "a.#", "#.*", "*.#", "*.#.*", "a.#.*",
             "a.b#"],
    "a.b*": ["#", "#.#", "*.*", "a.*", "a.#", "#.*", "*.#", "*.#.*", "a.#.*",
             "a.b*"],
    "a*.b": ["#", "#.#", "*.*", "#.*", "*.#", "*.#.*", "#.b.#", "a*.b"],
    "a.bc": ["#", "#.#", "*.*", "a.*", "a.#", "#.*", "*.#", "*.#.*", "a.#.*"],
    LONG_KEY: ["#", "#.#", "#.*", "*.#", "*.#.*", LONG_KEY, LONG_STAR],
}


def _key_id(key):
    return "long-255" if key == LONG_KEY else repr(key)


@pytest.mark.parametrize("routing_key", list(TOPIC_EXPECTED), ids=_key_id)
def test_topic_routing(channel, unique_name, routing_key):
    bindings = {pattern: (pattern, None) for pattern in TOPIC_PATTERNS}
    got = routing_table(channel, unique_name, "topic", bindings,
                        {"m": (routing_key, None)})
    matched = [pattern for pattern in TOPIC_PATTERNS if got[pattern]]
    assert matched == TOPIC_EXPECTED[routing_key]
    assert all(len(got[pattern]) <= 1 for pattern in TOPIC_PATTERNS)


def test_255_byte_routing_key_on_direct_exchange(channel, unique_name):
    assert len(LONG_KEY.encode()) == 255
    got = routing_table(channel, unique_name, "direct",
                        {"long": (LONG_KEY, None), "short": (LONG_KEY[:-1], None)},
                        {"m": (LONG_KEY, None)})
    assert got == {"long": ["m"], "short": []}
    # The key arrives intact.
    exchange = declare_exchange(channel, unique_name, "fanout")
    queue = declare_queue(channel, unique_name)
    channel.queue_bind(queue, exchange, "")
    channel.basic_publish(exchange, LONG_KEY, b"long")
    [(method, _, _)] = messages_up_to_marker(channel, queue)
    assert method.routing_key == LONG_KEY


# --------------------------------------------------------------------------
# direct / fanout and queue.bind / queue.unbind
# --------------------------------------------------------------------------

def test_direct_and_fanout_routing(channel, unique_name):
    direct = routing_table(
        channel, unique_name, "direct",
        {"k": ("k", None), "k-again": ("k", None), "other": ("other", None)},
        {"m1": ("k", None), "m2": ("K", None), "m3": ("other", None)})
    assert direct == {"k": ["m1"], "k-again": ["m1"], "other": ["m3"]}
    fanout = routing_table(
        channel, unique_name, "fanout",
        {"a": ("", None), "b": ("anything", None)},
        {"m1": ("", None), "m2": ("x.y", None)})
    assert fanout == {"a": ["m1", "m2"], "b": ["m1", "m2"]}


def test_queue_bound_twice_gets_one_copy(channel, unique_name):
    exchange = declare_exchange(channel, unique_name, "topic")
    queue = declare_queue(channel, unique_name)
    channel.queue_bind(queue, exchange, "a.*")
    channel.queue_bind(queue, exchange, "*.b")
    channel.basic_publish(exchange, "a.b", b"both")
    channel.basic_publish(exchange, "a.c", b"first")
    channel.basic_publish(exchange, "c.b", b"second")
    assert drain_up_to_marker(channel, queue) == [["both", "first", "second"]]


def test_bindings_differing_only_in_arguments_are_distinct(channel, unique_name):
    exchange = declare_exchange(channel, unique_name, "direct")
    queue = declare_queue(channel, unique_name)
    channel.queue_bind(queue, exchange, "k", arguments={"tag": 1})
    channel.queue_bind(queue, exchange, "k", arguments={"tag": 2})
    channel.basic_publish(exchange, "k", b"one copy")
    assert drain_up_to_marker(channel, queue) == [["one copy"]]

    # Unbinding needs the arguments too: only the {"tag": 1} binding goes.
    channel.queue_unbind(queue, exchange, "k", arguments={"tag": 1})
    channel.basic_publish(exchange, "k", b"still bound")
    assert drain_up_to_marker(channel, queue) == [["still bound"]]
    channel.queue_unbind(queue, exchange, "k")                  # no such binding
    channel.basic_publish(exchange, "k", b"still bound 2")
    assert drain_up_to_marker(channel, queue) == [["still bound 2"]]
    channel.queue_unbind(queue, exchange, "k", arguments={"tag": 2})
    channel.basic_publish(exchange, "k", b"unbound")
    assert drain_up_to_marker(channel, queue) == [[]]


def test_unbinding_a_missing_binding_is_ok(channel, unique_name):
    exchange = declare_exchange(channel, unique_name, "direct")
    queue = declare_queue(channel, unique_name)
    channel.queue_unbind(queue, exchange, "never-bound")
    channel.queue_bind(queue, exchange, "k")
    channel.queue_unbind(queue, exchange, "k")
    channel.queue_unbind(queue, exchange, "k")
    assert channel.is_open


@pytest.mark.parametrize("missing", ["queue", "exchange"])
def test_queue_unbind_naming_a_missing_queue_or_exchange_is_ok(channel, unique_name, missing):
    exchange = declare_exchange(channel, unique_name, "direct")
    queue = declare_queue(channel, unique_name)
    if missing == "queue":
        channel.queue_unbind(unique_name("missing-q"), exchange, "k")
    else:
        channel.queue_unbind(queue, unique_name("missing-x"), "k")
    assert channel.is_open


def test_queue_bind_to_missing_queue_or_exchange_is_not_found(connection, unique_name):
    setup = connection.channel()
    exchange = declare_exchange(setup, unique_name, "direct")
    queue = declare_queue(setup, unique_name)
    ch = connection.channel()
    err = channel_error(ch, lambda: ch.queue_bind(unique_name("missing-q"), exchange, "k"))
    assert err.reply_code == 404 and "no queue" in err.reply_text, err
    ch = connection.channel()
    err = channel_error(ch, lambda: ch.queue_bind(queue, unique_name("missing-x"), "k"))
    assert err.reply_code == 404 and "no exchange" in err.reply_text, err


# --------------------------------------------------------------------------
# headers exchange with pika's value encodings
# --------------------------------------------------------------------------

# pika encodes int as signed 32-bit 'I', pika.compat.long as 64-bit 'l',
# datetime as timestamp 'T', str as longstr 'S', bytes as byte array 'x',
# bool as 't', Decimal as 'D', None as void 'V'.  (pika 1.x cannot encode
# floats; the Node suite covers float/double values.)
HEADER_VALUES = {
    "int": 1,
    "long": pika.compat.long(1),
    "timestamp": datetime.datetime.fromtimestamp(1, datetime.timezone.utc),
    "str": "1",
    "bytes": b"1",
    "bool": True,
    "decimal": decimal.Decimal(1),
}

# binding value -> the message values that match it, per RabbitMQ 3.10
# (numbers, timestamps included, compare by value whatever their type; str
# and bytes compare by content).
HEADER_EXPECTED = {
    "int": ["int", "long", "timestamp"],
    "long": ["int", "long", "timestamp"],
    "timestamp": ["int", "long", "timestamp"],
    "str": ["str", "bytes"],
    "bytes": ["str", "bytes"],
    "bool": ["bool"],
    "decimal": ["decimal"],
}


@pytest.mark.parametrize("bound", list(HEADER_VALUES))
def test_headers_value_types(channel, unique_name, bound):
    got = routing_table(
        channel, unique_name, "headers",
        {"b": ("", {"x-match": "all", "v": HEADER_VALUES[bound]})},
        {name: ("", {"v": value}) for name, value in HEADER_VALUES.items()})
    assert got["b"] == HEADER_EXPECTED[bound]


def test_headers_all_and_any(channel, unique_name):
    got = routing_table(
        channel, unique_name, "headers",
        {
            "all": ("", {"x-match": "all", "format": "pdf", "type": "report"}),
            "any": ("", {"x-match": "any", "format": "pdf", "type": "report"}),
            "default": ("", {"format": "pdf", "type": "report"}),
            "all-with-x": ("", {"x-match": "all-with-x", "x-id": 7, "format": "pdf"}),
            "any-with-x": ("", {"x-match": "any-with-x", "x-id": 7}),
            "any-x-ignored": ("", {"x-match": "any", "x-id": 7}),
        },
        {
            "both": ("", {"format": "pdf", "type": "report"}),
            "format": ("", {"format": "pdf"}),
            "wrong": ("", {"format": "zip", "type": "log"}),
            "extra": ("", {"format": "pdf", "type": "report", "lang": "en"}),
            "with-x": ("", {"format": "pdf", "x-id": 7}),
            "none": ("", None),
        })
    assert got == {
        "all": ["both", "extra"],
        "any": ["both", "format", "extra", "with-x"],
        "default": ["both", "extra"],
        "all-with-x": ["with-x"],
        "any-with-x": ["with-x"],
        "any-x-ignored": [],
    }


def test_headers_void_binding_value_matches_presence(channel, unique_name):
    got = routing_table(
        channel, unique_name, "headers",
        {"present": ("", {"x-match": "all", "flag": None})},
        {"int": ("", {"flag": 5}), "str": ("", {"flag": "yes"}),
         "void": ("", {"flag": None}), "absent": ("", {"other": 1})})
    assert got == {"present": ["int", "str", "void"]}


def test_headers_bind_with_invalid_x_match_is_precondition_failed(connection, unique_name):
    setup = connection.channel()
    exchange = declare_exchange(setup, unique_name, "headers")
    queue = declare_queue(setup, unique_name)
    ch = connection.channel()
    err = channel_error(ch, lambda: ch.queue_bind(queue, exchange, "",
                                                 arguments={"x-match": "none"}))
    assert err.reply_code == 406, err
    assert "x-match" in err.reply_text, err


# --------------------------------------------------------------------------
# Alternate exchanges
# --------------------------------------------------------------------------

def test_unroutable_messages_go_to_the_alternate_exchange(channel, unique_name):
    ae = declare_exchange(channel, unique_name, "fanout", "ae")
    main = declare_exchange(channel, unique_name, "direct", "main",
                            arguments={"alternate-exchange": ae})
    routed = declare_queue(channel, unique_name)
    caught = declare_queue(channel, unique_name)
    channel.queue_bind(routed, main, "known")
    channel.queue_bind(caught, ae, "")
    channel.basic_publish(main, "known", b"routed")
    channel.basic_publish(main, "unknown", b"unroutable")
    assert drain_up_to_marker(channel, routed, caught) == [["routed"], ["unroutable"]]

    channel.basic_publish(main, "other-key", b"fields")
    [(method, _, _)] = messages_up_to_marker(channel, caught)
    assert method.exchange == main
    assert method.routing_key == "other-key"


def test_mandatory_with_alternate_exchange(connection, channel, unique_name):
    returns = Returns(connection, channel, unique_name)
    ae = declare_exchange(channel, unique_name, "direct", "ae")
    main = declare_exchange(channel, unique_name, "direct", "main",
                            arguments={"alternate-exchange": ae})
    queue = declare_queue(channel, unique_name)
    channel.queue_bind(queue, ae, "caught")

    channel.basic_publish(main, "caught", b"saved", mandatory=True)
    channel.basic_publish(main, "lost", b"lost", mandatory=True)
    returned = returns.settle()
    assert [(m.reply_code, m.reply_text, m.exchange, m.routing_key, body)
            for m, _, body in returned] == [(312, "NO_ROUTE", main, "lost", b"lost")]
    assert drain_up_to_marker(channel, queue) == [["saved"]]


def test_alternate_exchange_chain(connection, channel, unique_name):
    returns = Returns(connection, channel, unique_name)
    last = declare_exchange(channel, unique_name, "topic", "ae2")
    middle = declare_exchange(channel, unique_name, "direct", "ae1",
                              arguments={"alternate-exchange": last})
    main = declare_exchange(channel, unique_name, "direct", "main",
                            arguments={"alternate-exchange": middle})
    q_middle = declare_queue(channel, unique_name)
    q_last = declare_queue(channel, unique_name)
    channel.queue_bind(q_middle, middle, "m")
    channel.queue_bind(q_last, last, "l.#")

    channel.basic_publish(main, "m", b"to ae1", mandatory=True)
    channel.basic_publish(main, "l.x", b"to ae2", mandatory=True)
    channel.basic_publish(main, "z", b"nowhere", mandatory=True)
    assert [body for _, _, body in returns.settle()] == [b"nowhere"]
    assert drain_up_to_marker(channel, q_middle, q_last) == [["to ae1"], ["to ae2"]]


def test_alternate_exchange_cycle_does_not_loop(connection, channel, unique_name):
    returns = Returns(connection, channel, unique_name)
    a, b = unique_name("a"), unique_name("b")
    channel.exchange_declare(a, "direct", arguments={"alternate-exchange": b})
    channel.exchange_declare(b, "direct", arguments={"alternate-exchange": a})
    channel.basic_publish(a, "k", b"round and round", mandatory=True)
    assert [body for _, _, body in returns.settle()] == [b"round and round"]

    queue = declare_queue(channel, unique_name)
    channel.queue_bind(queue, b, "k")
    channel.basic_publish(a, "k", b"caught by b", mandatory=True)
    assert [body for _, _, body in returns.settle()] == [b"round and round"]
    assert drain_up_to_marker(channel, queue) == [["caught by b"]]


def test_missing_alternate_exchange_means_unroutable(connection, channel, unique_name):
    returns = Returns(connection, channel, unique_name)
    main = declare_exchange(channel, unique_name, "direct", "main",
                            arguments={"alternate-exchange": unique_name("missing")})
    channel.basic_publish(main, "k", b"returned", mandatory=True)
    assert [(m.reply_code, body) for m, _, body in returns.settle()] == [(312, b"returned")]


def test_alternate_exchange_may_be_internal(channel, unique_name):
    ae = declare_exchange(channel, unique_name, "fanout", "ae", internal=True)
    main = declare_exchange(channel, unique_name, "direct", "main",
                            arguments={"alternate-exchange": ae})
    queue = declare_queue(channel, unique_name)
    channel.queue_bind(queue, ae, "")
    channel.basic_publish(main, "k", b"via internal ae")
    assert drain_up_to_marker(channel, queue) == [["via internal ae"]]


# --------------------------------------------------------------------------
# CC / BCC (sender-selected distribution)
# --------------------------------------------------------------------------

def test_cc_and_bcc_on_the_default_exchange(channel, unique_name):
    main, cc, bcc = (declare_queue(channel, unique_name, k) for k in ("main", "cc", "bcc"))
    props = with_headers(CC=[cc], BCC=[bcc], other="kept")
    channel.basic_publish("", main, b"hello", props)

    copies = [messages_up_to_marker(channel, q) for q in (main, cc, bcc)]
    assert [len(c) for c in copies] == [1, 1, 1]
    for [(method, got, body)] in copies:
        assert body == b"hello"
        assert method.exchange == ""
        assert method.routing_key == main          # the publish key, not the CC
        # BCC is removed from what the queues store; CC stays.
        assert got.headers == {"CC": [cc], "other": "kept"}


def test_bcc_only_leaves_an_empty_header_table(channel, unique_name):
    queue = declare_queue(channel, unique_name)
    channel.basic_publish("", unique_name("nobody"), b"blind", with_headers(BCC=[queue]))
    [(method, props, body)] = messages_up_to_marker(channel, queue)
    assert body == b"blind"
    assert props.headers == {}


def test_cc_keys_are_routing_keys_of_the_exchange(channel, unique_name):
    direct = declare_exchange(channel, unique_name, "direct")
    topic = declare_exchange(channel, unique_name, "topic")
    q1, q2, q3, q4 = (declare_queue(channel, unique_name) for _ in range(4))
    channel.queue_bind(q1, direct, "k1")
    channel.queue_bind(q2, direct, "k2")
    channel.queue_bind(q3, topic, "eu.#")
    channel.queue_bind(q4, topic, "*.orders")

    channel.basic_publish(direct, "k1", b"d", with_headers(CC=["k2", "k3"]))
    channel.basic_publish(direct, "none", b"d-bcc", with_headers(BCC=["k2"]))
    channel.basic_publish(topic, "us.orders", b"t", with_headers(CC=["eu.fr.orders"]))
    channel.basic_publish(topic, "x", b"t-bcc", with_headers(BCC=["eu"]))
    assert drain_up_to_marker(channel, q1, q2, q3, q4) == [
        ["d"], ["d", "d-bcc"], ["t", "t-bcc"], ["t"]]


def test_cc_duplicates_deliver_one_copy(channel, unique_name):
    queue = declare_queue(channel, unique_name)
    channel.basic_publish("", queue, b"once", with_headers(CC=[queue, queue], BCC=[queue]))
    assert drain_up_to_marker(channel, queue) == [["once"]]


def test_cc_ignores_non_string_array_entries(channel, unique_name):
    queue = declare_queue(channel, unique_name)
    channel.basic_publish("", unique_name("nobody"), b"x", with_headers(CC=[1, queue, True]))
    [(_, props, _)] = messages_up_to_marker(channel, queue)
    assert props.headers == {"CC": [1, queue, True]}


def test_cc_satisfies_mandatory_and_prevents_alternate_exchange(connection, channel, unique_name):
    returns = Returns(connection, channel, unique_name)
    ae = declare_exchange(channel, unique_name, "fanout", "ae")
    main = declare_exchange(channel, unique_name, "direct", "main",
                            arguments={"alternate-exchange": ae})
    queue = declare_queue(channel, unique_name)
    ae_queue = declare_queue(channel, unique_name)
    channel.queue_bind(queue, main, "cc-key")
    channel.queue_bind(ae_queue, ae, "")

    channel.basic_publish(main, "nomatch", b"cc", with_headers(CC=["cc-key"]), mandatory=True)
    channel.basic_publish(main, "nomatch", b"to ae",
                          with_headers(CC=["nope"], BCC=["nope2"]), mandatory=True)
    channel.basic_publish("", unique_name("nobody"), b"back",
                          with_headers(CC=[unique_name("nobody")]), mandatory=True)
    assert [body for _, _, body in returns.settle()] == [b"back"]
    assert drain_up_to_marker(channel, queue) == [["cc"]]
    [(_, props, body)] = messages_up_to_marker(channel, ae_queue)
    assert (body, props.headers) == (b"to ae", {"CC": ["nope"]})


def test_cc_keys_follow_exchange_bindings(channel, unique_name):
    front = declare_exchange(channel, unique_name, "direct")
    back = declare_exchange(channel, unique_name, "direct")
    queue = declare_queue(channel, unique_name)
    channel.exchange_bind(back, front, "hop")
    channel.queue_bind(queue, back, "hop")
    channel.basic_publish(front, "nomatch", b"via bcc", with_headers(BCC=["hop"]))
    [(method, props, body)] = messages_up_to_marker(channel, queue)
    assert (method.exchange, method.routing_key, props.headers) == (front, "nomatch", {})


@pytest.mark.parametrize("header", ["CC", "BCC"])
def test_cc_bcc_that_is_not_an_array_is_precondition_failed(channel, unique_name, header):
    queue = declare_queue(channel, unique_name)
    err = channel_error(channel, lambda: channel.basic_publish(
        "", queue, b"x", with_headers(**{header: queue})))
    assert err.reply_code == 406, err
    assert "unacceptable_type_in_header" in err.reply_text, err


# --------------------------------------------------------------------------
# Exchange-to-exchange bindings, internal exchanges
# --------------------------------------------------------------------------

def test_exchange_bind_chain_and_unbind(channel, unique_name):
    a = declare_exchange(channel, unique_name, "topic", "a")
    b = declare_exchange(channel, unique_name, "direct", "b")
    queue = declare_queue(channel, unique_name)
    channel.exchange_bind(b, a, "log.*")
    channel.queue_bind(queue, b, "log.error")
    channel.basic_publish(a, "log.error", b"through")
    channel.basic_publish(a, "log.info", b"stops at b")
    channel.basic_publish(a, "other", b"stops at a")
    assert drain_up_to_marker(channel, queue) == [["through"]]

    channel.exchange_unbind(b, a, "log.*")
    channel.basic_publish(a, "log.error", b"after unbind")
    assert drain_up_to_marker(channel, queue) == [[]]
    # Unbinding again, or something never bound, is fine.
    channel.exchange_unbind(b, a, "log.*")
    channel.exchange_unbind(a, b, "never")
    assert channel.is_open


def test_exchange_cycle_delivers_once(channel, unique_name):
    a = declare_exchange(channel, unique_name, "fanout", "a")
    b = declare_exchange(channel, unique_name, "fanout", "b")
    queue = declare_queue(channel, unique_name)
    channel.exchange_bind(b, a)
    channel.exchange_bind(a, b)
    channel.queue_bind(queue, a, "")
    channel.basic_publish(a, "", b"from a")
    channel.basic_publish(b, "", b"from b")
    assert drain_up_to_marker(channel, queue) == [["from a", "from b"]]


def test_fan_in_through_several_exchanges_enqueues_once(channel, unique_name):
    top = declare_exchange(channel, unique_name, "fanout", "top")
    mids = [declare_exchange(channel, unique_name, "fanout", "mid") for _ in range(3)]
    queue = declare_queue(channel, unique_name)
    for mid in mids:
        channel.exchange_bind(mid, top)
        channel.queue_bind(queue, mid, "")
    channel.basic_publish(top, "", b"once")
    assert drain_up_to_marker(channel, queue) == [["once"]]


@pytest.mark.parametrize("missing", ["source", "destination"])
def test_exchange_bind_with_missing_exchange_is_not_found(channel, unique_name, missing):
    existing = declare_exchange(channel, unique_name, "direct")
    absent = unique_name("missing")
    source, destination = (absent, existing) if missing == "source" else (existing, absent)
    err = channel_error(channel, lambda: channel.exchange_bind(destination, source, "k"))
    assert err.reply_code == 404, err
    assert f"no exchange '{absent}'" in err.reply_text, err


def test_publish_to_internal_exchange_is_access_refused(connection, unique_name):
    setup = connection.channel()
    internal = declare_exchange(setup, unique_name, "fanout", internal=True)
    ch = connection.channel()
    err = channel_error(ch, lambda: ch.basic_publish(internal, "", b"refused"))
    assert err.reply_code == 403, err
    assert err.reply_text == (
        f"ACCESS_REFUSED - cannot publish to internal exchange '{internal}' in vhost '/'")


def test_internal_exchange_reachable_through_exchange_binding(channel, unique_name):
    front = declare_exchange(channel, unique_name, "direct", "front")
    internal = declare_exchange(channel, unique_name, "fanout", "internal", internal=True)
    queue = declare_queue(channel, unique_name)
    channel.exchange_bind(internal, front, "in")
    channel.queue_bind(queue, internal, "")
    channel.basic_publish(front, "in", b"reached")
    channel.basic_publish(front, "out", b"not bound")
    assert drain_up_to_marker(channel, queue) == [["reached"]]


# --------------------------------------------------------------------------
# exchange.declare / exchange.delete errors
# --------------------------------------------------------------------------

def test_passive_declare_of_missing_exchange_is_not_found(channel, unique_name):
    err = channel_error(channel, lambda: channel.exchange_declare(unique_name("x"), passive=True))
    assert err.reply_code == 404, err
    assert err.reply_text.startswith("NOT_FOUND - no exchange"), err


@pytest.mark.parametrize("name", ["amq.direct", "amq.fanout", "amq.topic", "amq.headers",
                                  "amq.match"])
def test_predeclared_exchanges_exist(channel, name):
    channel.exchange_declare(name, passive=True)
    assert channel.is_open


@pytest.mark.parametrize("change", [
    dict(exchange_type="fanout"),
    dict(durable=True),
    dict(auto_delete=True),
    dict(internal=True),
    dict(arguments={"alternate-exchange": "some-ae"}),
])
def test_redeclare_with_different_properties_is_precondition_failed(connection, unique_name,
                                                                     change):
    name = unique_name("x")
    connection.channel().exchange_declare(name, "direct")
    ch = connection.channel()
    options = dict(exchange_type="direct")
    options.update(change)
    err = channel_error(ch, lambda: ch.exchange_declare(name, **options))
    assert err.reply_code == 406, err
    assert err.reply_text.startswith("PRECONDITION_FAILED - inequivalent arg"), err


def test_amq_prefixed_name_is_access_refused(channel):
    name = "amq.warren-pytest-reserved"
    err = channel_error(channel, lambda: channel.exchange_declare(name, "direct"))
    assert err.reply_code == 403, err
    assert err.reply_text == (
        f"ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'")


@pytest.mark.parametrize("operation", ["declare", "declare-passive", "delete", "queue-bind",
                                       "exchange-bind"])
def test_default_exchange_operations_are_access_refused(connection, unique_name, operation):
    setup = connection.channel()
    queue = declare_queue(setup, unique_name)
    ch = connection.channel()
    action = {
        "declare": lambda: ch.exchange_declare("", "direct", durable=True),
        "declare-passive": lambda: ch.exchange_declare("", passive=True),
        "delete": lambda: ch.exchange_delete(""),
        "queue-bind": lambda: ch.queue_bind(queue, "", "k"),
        "exchange-bind": lambda: ch.exchange_bind("amq.direct", "", "k"),
    }[operation]
    err = channel_error(ch, action)
    assert err.reply_code == 403, err
    assert err.reply_text == "ACCESS_REFUSED - operation not permitted on the default exchange"


def test_unknown_exchange_type_closes_the_connection(connection, channel, unique_name):
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        channel.exchange_declare(unique_name("x"), "x-no-such-type")
    assert info.value.reply_code == 503, info.value
    assert info.value.reply_text == "COMMAND_INVALID - unknown exchange type 'x-no-such-type'"
    assert connection.is_closed


def test_delete_of_missing_exchange_is_ok(channel, unique_name):
    channel.exchange_delete(unique_name("x"))
    channel.exchange_delete(unique_name("x"), if_unused=True)
    assert channel.is_open


def test_delete_if_unused(connection, unique_name):
    setup = connection.channel()
    exchange = declare_exchange(setup, unique_name, "fanout")
    queue = declare_queue(setup, unique_name)
    setup.queue_bind(queue, exchange, "")
    ch = connection.channel()
    err = channel_error(ch, lambda: ch.exchange_delete(exchange, if_unused=True))
    assert err.reply_code == 406, err
    assert err.reply_text.endswith("in use"), err
    assert exchange_exists(connection, exchange)

    setup.queue_unbind(queue, exchange, "")
    setup.exchange_delete(exchange, if_unused=True)
    assert not exchange_exists(connection, exchange)


# --------------------------------------------------------------------------
# auto-delete exchanges
# --------------------------------------------------------------------------

def test_auto_delete_exchange_goes_with_its_last_binding(connection, channel, unique_name):
    exchange = declare_exchange(channel, unique_name, "topic", auto_delete=True)
    q1, q2 = declare_queue(channel, unique_name), declare_queue(channel, unique_name)
    channel.queue_bind(q1, exchange, "a.#")
    channel.queue_bind(q2, exchange, "b.#")
    channel.queue_unbind(q1, exchange, "a.#")
    assert exchange_exists(connection, exchange)
    channel.queue_delete(q2)
    eventually(lambda: not exchange_exists(connection, exchange))


def test_auto_delete_exchange_goes_with_its_last_exchange_binding(connection, channel,
                                                                 unique_name):
    source = declare_exchange(channel, unique_name, "fanout", "src", auto_delete=True)
    destination = declare_exchange(channel, unique_name, "fanout", "dst")
    channel.exchange_bind(destination, source)
    assert exchange_exists(connection, source)
    channel.exchange_unbind(destination, source)
    eventually(lambda: not exchange_exists(connection, source))


def test_unused_auto_delete_exchange_stays(connection, channel, unique_name):
    exchange = declare_exchange(channel, unique_name, "direct", auto_delete=True)
    queue = declare_queue(channel, unique_name)
    channel.basic_publish(exchange, "k", b"unroutable")
    assert drain_up_to_marker(channel, queue) == [[]]
    assert exchange_exists(connection, exchange)


def test_amq_rabbitmq_trace_exists_in_every_vhost(channel):
    # RabbitMQ predeclares its tracing exchange (internal, topic, durable) in every vhost.
    channel.exchange_declare("amq.rabbitmq.trace", "topic", passive=True)
    channel.exchange_declare("amq.rabbitmq.trace", "topic", durable=True, internal=True, passive=True)
