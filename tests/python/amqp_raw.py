"""A minimal raw-socket AMQP 0-9-1 client for protocol-level tests.

pika hides (and validates) the wire, so tests that must send malformed or
out-of-order frames, or stay silent to provoke a heartbeat timeout, use this.
Frames are encoded and decoded with pika's own codec (``pika.frame`` and
``pika.spec``), so only the deliberately broken parts are hand-made.
"""

import socket
import struct
import time

import pika.frame
import pika.spec

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_END = b"\xce"


class RawAMQP:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        self.eof = False

    # -- sending ----------------------------------------------------------

    def send(self, data):
        self.sock.sendall(data)

    def send_method(self, channel, method):
        self.send(pika.frame.Method(channel, method).marshal())

    @staticmethod
    def raw_frame(frame_type, channel, payload, end=FRAME_END):
        """A frame built by hand, so any field (or the end octet) can be wrong."""
        return struct.pack(">BHL", frame_type, channel, len(payload)) + payload + end

    # -- receiving --------------------------------------------------------

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from broker in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buffer += chunk

    def recv_frame(self, timeout=5.0):
        """Next frame (pika frame object), or None once the broker closed
        the socket.  Heartbeat frames are returned like any other."""
        deadline = time.monotonic() + timeout
        while True:
            consumed, frame = pika.frame.decode_frame(self.buffer)
            if frame is not None:
                self.buffer = self.buffer[consumed:]
                return frame
            if self.eof:
                return None
            self._fill(deadline)

    def recv_method(self, timeout=5.0, skip_heartbeats=True):
        """Next method frame's method (None at EOF)."""
        while True:
            frame = self.recv_frame(timeout)
            if frame is None:
                return None
            if skip_heartbeats and isinstance(frame, pika.frame.Heartbeat):
                continue
            assert isinstance(frame, pika.frame.Method), f"expected a method, got {frame!r}"
            return frame.method

    def recv_raw(self, size, timeout=5.0):
        """Exactly ``size`` raw bytes (fewer if the socket closes first)."""
        deadline = time.monotonic() + timeout
        while len(self.buffer) < size and not self.eof:
            self._fill(deadline)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def wait_for_eof(self, timeout=5.0):
        """Discard incoming data until the broker closes the socket."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            self.buffer = b""
            self._fill(deadline)

    def wait_for_connection_close(self, timeout=5.0):
        """The broker's connection.close, answered with close-ok; then EOF."""
        while True:
            method = self.recv_method(timeout)
            assert method is not None, "socket closed without connection.close"
            if isinstance(method, pika.spec.Connection.Close):
                self.send_method(0, pika.spec.Connection.CloseOk())
                return method

    # -- conversation -----------------------------------------------------

    def handshake(self, username="guest", password="guest", vhost="/",
                  heartbeat=0, frame_max=131072, channel_max=2047, capabilities=None):
        """Complete the connection handshake; returns (start, tune) methods.
        ``capabilities`` adds client capabilities (e.g. consumer_cancel_notify)."""
        self.send(PROTOCOL_HEADER)
        start = self.recv_method()
        assert isinstance(start, pika.spec.Connection.Start), start
        self.send_method(0, pika.spec.Connection.StartOk(
            client_properties={"product": "warren-pytest-raw",
                               "capabilities": {"authentication_failure_close": True,
                                                **(capabilities or {})}},
            mechanism="PLAIN",
            response=f"\0{username}\0{password}",
            locale="en_US"))
        tune = self.recv_method()
        assert isinstance(tune, pika.spec.Connection.Tune), tune
        self.send_method(0, pika.spec.Connection.TuneOk(
            channel_max=channel_max, frame_max=frame_max, heartbeat=heartbeat))
        self.send_method(0, pika.spec.Connection.Open(virtual_host=vhost))
        open_ok = self.recv_method()
        assert isinstance(open_ok, pika.spec.Connection.OpenOk), open_ok
        return start, tune

    def open_channel(self, channel=1):
        self.send_method(channel, pika.spec.Channel.Open())
        ok = self.recv_method()
        assert isinstance(ok, pika.spec.Channel.OpenOk), ok

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
