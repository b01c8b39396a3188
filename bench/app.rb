# frozen_string_literal: true

# The benchmark app (endpoints in bench/README.md), one Rack app shared by every
# server in the comparison. A module with self.call: shareable, so Kino
# can run it in :ractor mode, and plain Rack for everyone else.
module BenchApp
  HELLO = "Hello, World!"
  TEN_K = ("0123456789abcdef" * 640).freeze # 10,240 bytes
  KIB = ("x" * 1024).freeze
  TEXT = "text/plain"
  NATIVE_SLEEP = defined?(Kino) && Kino.respond_to?(:sleep)

  def self.call(env)
    case env["PATH_INFO"]
    when "/plaintext" then ok(HELLO)
    when "/10k" then ok(TEN_K)
    when "/cpu" then ok(fib(20).to_s)
    when "/io"
      sleep 0.005
      ok("slept")
    when "/io_native"
      NATIVE_SLEEP ? Kino.sleep(0.005) : sleep(0.005)
      ok("slept")
    when "/upload" then ok(upload_size(env["rack.input"]).to_s)
    when "/stream" then [200, { "content-type" => TEXT }, Stream.new]
    else [404, { "content-type" => TEXT }, ["not found"]]
    end
  end

  def self.ok(body)
    [200, { "content-type" => TEXT }, [body]]
  end

  def self.fib(n)
    n < 2 ? n : fib(n - 1) + fib(n - 2)
  end

  def self.upload_size(input)
    size = 0
    buffer = +""
    size += buffer.bytesize while input.read(16_384, buffer)
    size
  end

  # Ten 1 KiB chunks, streamed (chunked transfer encoding).
  class Stream
    def each
      10.times { yield KIB }
    end
  end
end
