#!/usr/bin/python3
"""Write the seed corpus of fuzz_h2 (fuzz/corpus/h2): client byte streams
after the connection preface, each led by the byte that picks how
fuzz_h2 cuts the input. Header blocks come from python3-h2's HPACK
encoder (Huffman and the dynamic table included), frames from hand."""
import os, struct, sys
from hpack import Encoder

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")

def frame(t, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid) + payload

def settings(*pairs):
    return frame(4, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))

GET = [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "example.org")]
POST = [(":method", "POST"), (":scheme", "http"), (":path", "/up?x=1"), ("content-length", "5")]

def seeds():
    e = Encoder()
    yield "get", settings() + frame(1, 5, 1, e.encode(GET + [("accept", "*/*")]))
    e = Encoder()
    b1, b2 = e.encode(GET + [("cookie", "a=1"), ("cookie", "b=2")]), None
    b2 = e.encode(GET + [("cookie", "a=1")])  # dynamic table references
    yield "two-streams", settings((4, 1 << 20)) + frame(1, 5, 1, b1) + frame(1, 5, 3, b2)
    e = Encoder()
    yield "post-padded", settings() + frame(1, 4, 1, e.encode(POST)) + \
        frame(0, 9, 1, bytes([3]) + b"hello" + b"\0\0\0")
    e = Encoder()
    blk = e.encode(GET + [("x-long", "v" * 300)])
    yield "continuation", settings() + frame(1, 1, 1, blk[:10]) + frame(9, 0, 1, blk[10:20]) + \
        frame(9, 4, 1, blk[20:])
    e = Encoder()
    yield "trailers", settings() + frame(1, 4, 1, e.encode(POST[:3])) + frame(0, 0, 1, b"abc") + \
        frame(1, 5, 1, e.encode([("x-checksum", "1")]))
    e = Encoder()
    yield "control", settings((1, 0), (3, 10), (5, 32768), (0x99, 1)) + frame(4, 1, 0) + \
        frame(6, 0, 0, b"12345678") + frame(8, 0, 0, struct.pack(">I", 1000)) + \
        frame(2, 0, 3, struct.pack(">IB", 1, 20)) + frame(1, 0x25, 5, struct.pack(">IB", 3, 10) + e.encode(GET)) + \
        frame(3, 0, 5, struct.pack(">I", 8)) + frame(7, 0, 0, struct.pack(">II", 0, 0) + b"bye")
    e = Encoder()
    yield "window", settings((4, 10)) + frame(1, 5, 1, e.encode(GET)) + frame(8, 0, 1, struct.pack(">I", 5)) + \
        settings((4, 70000)) + frame(8, 0, 0, struct.pack(">I", 1))
    e = Encoder()
    e.header_table_size = 0
    yield "table-size", settings((1, 100)) + frame(1, 5, 1, e.encode(GET))
    e = Encoder()
    yield "rapid-reset", settings() + b"".join(
        frame(1, 5, i, e.encode(GET)) + frame(3, 0, i, struct.pack(">I", 8)) for i in range(1, 40, 2))
    e = Encoder()
    yield "bad-header", settings() + frame(1, 5, 1, e.encode(GET + [("Upper", "x"), ("te", "gzip")]))
    yield "unknown-and-empty", settings() + frame(0x20, 0, 0, b"zz") + frame(0, 0, 1) + frame(1, 4, 1, b"")

os.makedirs(out, exist_ok=True)
for i, (name, data) in enumerate(seeds()):
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([i % 16]) + data)
