#!/usr/bin/python3
"""Frame-level HTTP/2 cases against a running Kino (test/http2_test.rb).

    /usr/bin/python3 test/h2/frames.py PORT CASE

Each case writes frames by hand (hyperframe, hpack from python3-h2), so
it can send what a well-behaved client never would, and checks what
comes back: the frames, their codes, and that the connection (or the
server) still serves afterwards. It prints "ok CASE" and exits 0, or
prints why and exits 1. The app behind the port is test/http2_test.rb's:
/ answers "hello", /slow sleeps 1 s, /big sends 1 MB, /echo reads the
body, /count says how many requests reached the app, /drip sends its
head and then its body slowly, /hold waits until /release lets it go,
/hints sends 103 Early Hints first.
"""
import socket
import struct
import sys
import time

from hpack import Encoder, Decoder
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, PriorityFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR = 1, 3, 5, 6
REFUSED_STREAM, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 7, 9, 11


class Fail(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Fail(why)


class Conn:
    """One client connection: raw frames out, parsed frames in."""

    def __init__(self, port, settings=None, preface=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.enc, self.dec = Encoder(), Decoder()
        self.buf = b""
        self.frames = []
        if preface:
            s = SettingsFrame(0)
            s.settings = settings or {}
            self.send(PREFACE + s.serialize())

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.serialize())

    def headers(self, sid, path="/", method="GET", end=True, extra=(), raw=None):
        f = HeadersFrame(sid)
        f.data = raw if raw is not None else self.enc.encode(
            [(":method", method), (":scheme", "http"), (":path", path), (":authority", "localhost")] + list(extra))
        f.flags.add("END_HEADERS")
        if end:
            f.flags.add("END_STREAM")
        return f

    def read_frame(self, timeout=10):
        """The next frame, or None once the server closed (or timeout)."""
        deadline = time.time() + timeout
        while True:
            if len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + length:
                    f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                    f.parse_body(memoryview(self.buf[9:9 + length]))
                    self.buf = self.buf[9 + length:]
                    self.frames.append(f)
                    return f
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def until(self, pred, timeout=10):
        """Read until pred(frame) holds; that frame, or None."""
        deadline = time.time() + timeout
        while True:
            f = self.read_frame(max(0.01, deadline - time.time()))
            if f is None:
                return None
            if pred(f):
                return f

    def goaway(self, timeout=10):
        return self.until(lambda f: isinstance(f, GoAwayFrame), timeout)

    def response(self, sid, timeout=10):
        """(status, headers dict, body) of stream sid, ACKing nothing."""
        status, hdrs, body = None, {}, b""
        deadline = time.time() + timeout
        while True:
            f = self.read_frame(max(0.01, deadline - time.time()))
            check(f is not None, "no complete response on stream %d" % sid)
            if f.stream_id != sid:
                continue
            if isinstance(f, RstStreamFrame):
                raise Fail("stream %d reset with %d" % (sid, f.error_code))
            if isinstance(f, HeadersFrame):
                for k, v in self.dec.decode(f.data):
                    k = k.decode() if isinstance(k, bytes) else k
                    v = v.decode() if isinstance(v, bytes) else v
                    if k == ":status":
                        status = int(v)
                    else:
                        hdrs[k] = v
            if isinstance(f, DataFrame):
                body += f.data
                if f.flow_controlled_length:
                    self.send(WindowUpdateFrame(0, f.flow_controlled_length).serialize() +
                              WindowUpdateFrame(sid, f.flow_controlled_length).serialize())
            if "END_STREAM" in f.flags:
                return status, hdrs, body

    def close(self):
        self.sock.close()


def expect_goaway(c, code, why):
    g = c.goaway()
    check(g is not None, "%s: no GOAWAY" % why)
    check(g.error_code == code, "%s: GOAWAY %d, wanted %d" % (why, g.error_code, code))
    return g


def expect_rst(c, sid, code, why):
    r = c.until(lambda f: isinstance(f, (RstStreamFrame, GoAwayFrame)) and (f.stream_id in (0, sid)))
    check(r is not None and isinstance(r, RstStreamFrame), "%s: no RST_STREAM" % why)
    check(r.error_code == code, "%s: RST_STREAM %d, wanted %d" % (why, r.error_code, code))


def still_serves(port):
    c = Conn(port)
    c.send(c.headers(1))
    status, _, body = c.response(1)
    c.close()
    check(status == 200 and body == b"hello", "a new connection is not served")


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


@case
def preface_and_settings(port):  # RFC 9113 3.4, 6.5.3
    c = Conn(port)
    f = c.read_frame()
    check(isinstance(f, SettingsFrame) and "ACK" not in f.flags, "the first frame is not SETTINGS")
    check(f.settings.get(SettingsFrame.MAX_CONCURRENT_STREAMS, 0) >= 16, "MAX_CONCURRENT_STREAMS")
    check(c.until(lambda f: isinstance(f, SettingsFrame) and "ACK" in f.flags), "SETTINGS not ACKed")
    c.send(c.headers(1))
    status, hdrs, body = c.response(1)
    check(status == 200 and body == b"hello" and hdrs.get("server") == "Kino", "GET /")


@case
def bad_preface(port):  # 3.4
    c = Conn(port, preface=False)
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    data = c.sock.recv(4096)
    check(not data.startswith(b"HTTP/1.1 200"), "a bad preface was served")


@case
def ping(port):  # 6.7
    c = Conn(port)
    c.send(PingFrame(0, b"kinotest"))
    p = c.until(lambda f: isinstance(f, PingFrame))
    check(p is not None and "ACK" in p.flags and p.opaque_data == b"kinotest", "PING not echoed")


@case
def idle_stream_frames(port):  # 5.1 idle
    for frame in (DataFrame(1, b"x"), RstStreamFrame(1), WindowUpdateFrame(1, 1)):
        c = Conn(port)
        c.send(frame)
        expect_goaway(c, PROTOCOL_ERROR, type(frame).__name__ + " on an idle stream")
        c.close()


@case
def frame_sizes(port):  # 4.2, 6.4, 6.7, 6.9
    bad = [
        (struct.pack(">I", 16385)[1:] + b"\x00\x00\x00\x00\x00\x01" + b"x" * 16385, FRAME_SIZE_ERROR, "DATA over 16384"),
        (b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"1234567", FRAME_SIZE_ERROR, "PING of 7"),
        (b"\x00\x00\x03\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x01", FRAME_SIZE_ERROR, "WINDOW_UPDATE of 3"),
        (b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"12345678", PROTOCOL_ERROR, "PING on a stream"),
        (b"\x00\x00\x00\x04\x00\x00\x00\x00\x01", PROTOCOL_ERROR, "SETTINGS on a stream"),
        (b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5, FRAME_SIZE_ERROR, "SETTINGS of 5"),
        (b"\x00\x00\x04\x05\x04\x00\x00\x00\x01" + b"\x00\x00\x00\x02", PROTOCOL_ERROR, "PUSH_PROMISE"),
    ]
    for raw, code, why in bad:
        c = Conn(port)
        c.send(raw)
        expect_goaway(c, code, why)
        c.close()


@case
def settings_values(port):  # 6.5.2
    for ident, value, code in ((2, 2, PROTOCOL_ERROR), (4, 2 ** 31, FLOW_CONTROL_ERROR),
                               (5, 16383, PROTOCOL_ERROR), (5, 2 ** 24, PROTOCOL_ERROR)):
        c = Conn(port)
        c.send(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + struct.pack(">HI", ident, value))
        expect_goaway(c, code, "SETTINGS %d = %d" % (ident, value))
        c.close()


@case
def stream_ids(port):  # 5.1.1
    c = Conn(port)
    c.send(c.headers(2))
    expect_goaway(c, PROTOCOL_ERROR, "an even stream id")
    c = Conn(port)
    c.send(c.headers(5))
    c.response(5)
    c.send(c.headers(3))
    g = expect_goaway(c, PROTOCOL_ERROR, "a lower stream id")
    check(g.last_stream_id == 5, "GOAWAY last stream id %d" % g.last_stream_id)


@case
def closed_streams(port):  # 5.1 half-closed (remote), closed
    c = Conn(port)
    c.send(c.headers(1, path="/slow"))
    c.send(DataFrame(1, b"late"))
    expect_rst(c, 1, STREAM_CLOSED, "DATA after END_STREAM")
    c = Conn(port)
    c.send(c.headers(1, method="POST", path="/slow", end=False))  # still open when the RST comes
    c.send(RstStreamFrame(1, 8))
    c.send(DataFrame(1, b"late"))
    expect_goaway(c, STREAM_CLOSED, "DATA after RST_STREAM")


@case
def continuation(port):  # 6.10
    c = Conn(port)
    block = c.enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                          (":authority", "localhost"), ("x-a", "b" * 100)])
    h = HeadersFrame(1, block[:5])
    h.flags.add("END_STREAM")
    c1 = ContinuationFrame(1, block[5:20])
    c2 = ContinuationFrame(1, block[20:])
    c2.flags.add("END_HEADERS")
    c.send(h.serialize() + c1.serialize() + c2.serialize())
    status, _, body = c.response(1)
    check(status == 200 and body == b"hello", "a head in three frames")
    h = HeadersFrame(3, block[:5])
    c.send(h.serialize() + PingFrame(0, b"12345678").serialize())
    expect_goaway(c, PROTOCOL_ERROR, "PING inside a header block")


@case
def header_rules(port):  # 8.2, 8.3
    bad = [[("Upper", "x")], [("connection", "close")], [("te", "gzip")], [("transfer-encoding", "chunked")],
           [(":unknown", "x")]]
    for extra in bad:
        c = Conn(port)
        c.send(c.headers(1, extra=extra))
        expect_rst(c, 1, PROTOCOL_ERROR, "header %r" % (extra,))
        c.send(c.headers(3))
        status, _, _ = c.response(3)
        check(status == 200, "the connection serves on after %r" % (extra,))
        c.close()
    c = Conn(port)
    c.send(c.headers(1, extra=[("te", "trailers")]))
    check(c.response(1)[0] == 200, "te: trailers is allowed")
    c = Conn(port)
    c.send(c.headers(1, method="POST", path="/echo", end=False, extra=[("content-length", "3")]))
    c.send(DataFrame(1, b"abcd", flags=["END_STREAM"]))
    expect_rst(c, 1, PROTOCOL_ERROR, "DATA past content-length")


@case
def request_body_flow_control(port):  # 6.9: the window reopens as the app reads
    c = Conn(port)
    body = bytes(range(256)) * 800  # 204800 bytes: three times the stream window
    c.send(c.headers(1, method="POST", path="/echo", end=False, extra=[("content-length", str(len(body)))]))
    sent, window, updates = 0, 65535, 0
    while sent < len(body):
        while window > 0 and sent < len(body):
            n = min(16384, window, len(body) - sent)
            c.send(DataFrame(1, body[sent:sent + n], flags=["END_STREAM"] if sent + n == len(body) else []))
            sent += n
            window -= n
        if sent < len(body):
            f = c.until(lambda f: isinstance(f, WindowUpdateFrame) and f.stream_id == 1)
            check(f is not None, "no WINDOW_UPDATE for the stream after %d bytes" % sent)
            window += f.window_increment
            updates += 1
    status, _, text = c.response(1)
    check(status == 200 and text.startswith(b"got 204800:"), "echo: %r" % text[:40])
    check(updates >= 2, "the window reopened only %d times" % updates)


@case
def response_flow_control(port):  # 6.9.1, 6.9.2
    c = Conn(port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1000})
    c.send(c.headers(1, path="/big"))
    got = 0
    deadline = time.time() + 1
    while time.time() < deadline:
        f = c.read_frame(max(0.01, deadline - time.time()))
        if f is None:
            break
        if isinstance(f, DataFrame):
            got += len(f.data)
    check(got == 1000, "sent %d bytes into a window of 1000" % got)
    # the window opens: SETTINGS shifts the open stream, WINDOW_UPDATE opens the connection
    c.send(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + struct.pack(">HI", 4, 2 ** 20))
    c.send(WindowUpdateFrame(0, 2 ** 21))
    while got < 1000000:
        f = c.read_frame()
        check(f is not None, "stalled at %d bytes" % got)
        if isinstance(f, DataFrame):
            got += len(f.data)
            check(len(f.data) <= 16384, "DATA past MAX_FRAME_SIZE")
            if "END_STREAM" in f.flags:
                break
    check(got == 1000000, "got %d of 1000000" % got)


@case
def no_head_of_line_blocking(port):  # a slow handler holds only its stream
    c = Conn(port)
    c.send(c.headers(1, path="/slow"))
    c.send(c.headers(3, path="/"))
    first = c.until(lambda f: isinstance(f, (HeadersFrame, DataFrame)) and "END_STREAM" in f.flags)
    check(first is not None and first.stream_id == 3, "stream 3 waited for the slow stream 1")
    last = c.until(lambda f: "END_STREAM" in f.flags and f.stream_id == 1, timeout=5)
    check(last is not None, "the slow stream never finished")


@case
def concurrent_streams_limit(port):  # MAX_CONCURRENT_STREAMS: refused past it
    c = Conn(port)
    s = c.read_frame()
    limit = s.settings[SettingsFrame.MAX_CONCURRENT_STREAMS]
    data = b"".join(c.headers(2 * i + 1, path="/slow").serialize() for i in range(limit + 4))
    c.send(data)
    refused = 0
    deadline = time.time() + 5
    while time.time() < deadline and refused < 4:
        f = c.read_frame(1)
        if isinstance(f, RstStreamFrame):
            check(f.error_code == REFUSED_STREAM, "RST_STREAM %d" % f.error_code)
            check(f.stream_id > 2 * limit, "stream %d of %d refused" % (f.stream_id, limit))
            refused += 1
    check(refused == 4, "refused %d streams past the limit of %d" % (refused, limit))


@case
def hpack_bomb(port):  # the decoded header-list cap: 431, the connection lives
    c = Conn(port)
    # one 4 KB entry in the dynamic table, then 40 one-byte references to
    # it: a 160 KB header list from a 4 KB block
    block = c.enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x"),
                          ("x-bomb", "b" * 4000)])
    block += bytes([0x80 | 62]) * 40
    f = HeadersFrame(1, block)
    f.flags.add("END_HEADERS")
    f.flags.add("END_STREAM")
    c.send(f)
    status, _, _ = c.response(1)
    check(status == 431, "status %r for a 160 KB header list" % status)
    c.send(c.headers(3))
    check(c.response(3)[0] == 200, "the connection serves on after 431")


@case
def continuation_flood(port):  # CVE-2024-27316 and kin: empty frames counted
    c = Conn(port)
    h = HeadersFrame(1, c.enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/")]))
    c.send(h.serialize() + b"".join(ContinuationFrame(1, b"").serialize() for _ in range(100)))
    expect_goaway(c, ENHANCE_YOUR_CALM, "100 empty CONTINUATION frames")
    c = Conn(port)
    h = HeadersFrame(1, c.enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/")]))
    c.send(h.serialize() + b"".join(ContinuationFrame(1, b"x-long: " + b"y" * 16000).serialize() for _ in range(10)))
    expect_goaway(c, ENHANCE_YOUR_CALM, "a 160 KB header block")
    still_serves(port)


@case
def rapid_reset(port):  # CVE-2023-44487
    before = count(port)
    c = Conn(port)
    for batch in range(40):
        data = b""
        for i in range(50):
            sid = 2 * (batch * 50 + i) + 1
            data += c.headers(sid, path="/count-me").serialize() + RstStreamFrame(sid, 8).serialize()
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            break
    g = c.goaway()
    refused = sum(1 for f in c.frames if isinstance(f, RstStreamFrame) and f.error_code == REFUSED_STREAM)
    check(g is not None and g.error_code == ENHANCE_YOUR_CALM, "no GOAWAY ENHANCE_YOUR_CALM")
    check(refused > 0, "no stream was refused")
    reached = count(port) - before
    check(reached < 400, "%d of 2000 reset streams reached the app" % reached)
    still_serves(port)


@case
def request_timeout(port):  # request_timeout (0.3 s here): a 504 on that stream alone
    c = Conn(port)
    c.send(c.headers(1, path="/hold"))
    status, hdrs, body = c.response(1)
    check(status == 504 and body == b"Gateway Timeout\n", "stream 1: %r %r" % (status, body))
    check(hdrs.get("content-length") == "16", "504 without its content-length: %r" % hdrs)
    c.send(c.headers(3, path="/release"))
    status, _, body = c.response(3)
    check(body == b"released 1", "the 504 did not come while the handler ran: %r" % body)
    # a response that has begun is never cut: /drip sends its head, then
    # the rest of its body 0.6 s later
    c.send(c.headers(5, path="/drip"))
    status, _, body = c.response(5)
    check(status == 200 and body == b"drip-drop", "a started response was cut: %r %r" % (status, body))
    # a request body still coming after the 504 is declined with
    # RST_STREAM NO_ERROR once the handler lets go (RFC 9113 8.1)
    c.send(c.headers(7, method="POST", path="/hold", end=False))
    status, _, _ = c.response(7)
    check(status == 504, "stream 7: %r" % status)
    c.send(c.headers(9, path="/release"))
    expect_rst(c, 7, 0, "a request body still arriving after the 504")
    # the late responses never reach the wire, and the connection lives
    late = c.until(lambda f: isinstance(f, (HeadersFrame, DataFrame, GoAwayFrame)) and f.stream_id in (0, 1, 7),
                   timeout=1)
    check(late is None, "after the 504: %r" % late)
    c.send(c.headers(11))
    check(c.response(11)[0] == 200, "the connection does not serve on")


@case
def early_hints(port):  # rack.early_hints: 103 in a HEADERS frame of its own, then the response
    c = Conn(port)
    c.send(c.headers(1, path="/hints"))
    heads, body = [], b""
    while True:
        f = c.until(lambda f: f.stream_id == 1)
        check(f is not None, "stream 1 did not end")
        check(not isinstance(f, RstStreamFrame), "stream 1 reset with %d" % getattr(f, "error_code", -1))
        if isinstance(f, HeadersFrame):
            fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                      for k, v in c.dec.decode(f.data)}
            heads.append((fields, "END_STREAM" in f.flags))
        elif isinstance(f, DataFrame):
            body += f.data
        if "END_STREAM" in f.flags:
            break
    check(len(heads) == 2, "heads: %r" % heads)
    hint, hint_end = heads[0]
    check(hint.get(":status") == "103" and not hint_end, "first head: %r" % (heads[0],))
    check(hint.get("link") == "</style.css>; rel=preload; as=style", "the hint's link: %r" % hint)
    check("content-length" not in hint, "a framing field in a 1xx head: %r" % hint)
    check(heads[1][0].get(":status") == "200" and body == b"hinted", "then: %r %r" % (heads[1], body))


def count(port):
    c = Conn(port)
    c.send(c.headers(1, path="/count"))
    _, _, body = c.response(1)
    c.close()
    return int(body)


@case
def control_floods(port):  # the 2019 floods: PING, SETTINGS, empty DATA, PRIORITY
    floods = {
        "PING": PingFrame(0, b"12345678").serialize(),
        "SETTINGS": SettingsFrame(0).serialize(),
        "PRIORITY": PriorityFrame(3, depends_on=0, stream_weight=16).serialize(),
    }
    for name, frame in floods.items():
        c = Conn(port)
        try:
            for _ in range(5):
                c.send(frame * 1000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        expect_goaway(c, ENHANCE_YOUR_CALM, name + " flood")
        c.close()
    c = Conn(port)
    c.send(c.headers(1, method="POST", path="/slow", end=False))
    try:
        for _ in range(5):
            c.send(DataFrame(1, b"").serialize() * 1000)
    except (BrokenPipeError, ConnectionResetError):
        pass
    expect_goaway(c, ENHANCE_YOUR_CALM, "empty DATA flood")
    still_serves(port)


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    try:
        CASES[name](port)
    except Fail as e:
        print("FAIL %s: %s" % (name, e))
        sys.exit(1)
    print("ok " + name)


if __name__ == "__main__":
    main()
