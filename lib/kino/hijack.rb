# frozen_string_literal: true

require "socket"

module Kino
  # The socket an app gets from Rack hijack (env["rack.hijack"].call, a
  # rack.hijack response header, or a 101 response's callable body). The
  # engine has let go of the connection for good: the app reads, writes
  # and closes it (doc/hijack.md). Kino::Hijack itself is the object
  # behind env["rack.hijack"], defined by the native extension.
  class Hijack
    # A real socket over +fd+ (TCPSocket, or UNIXSocket for a unix
    # listener), closed when garbage-collected if the app drops it. +rest+
    # holds the bytes the server had read past the request (a pipelined
    # request, frames a client sent early), or nil: the socket's read
    # methods return them first.
    def self.socket(fd, unix, rest)
      io = (unix ? UNIXSocket : TCPSocket).for_fd(fd)
      io.autoclose = true
      io.sync = true
      io.extend(Rest).kino_rest = rest.b if rest && !rest.empty?
      io
    end

    # Read methods that return the bytes read ahead before the socket's
    # own. Something that reads the fd itself (EventMachine.attach, a C
    # extension calling recv) does not see them, and a poller watching the
    # fd is not told they are there; doc/hijack.md says when that matters.
    module Rest
      attr_writer :kino_rest

      def read_nonblock(maxlen, buffer = nil, exception: true)
        @kino_rest ? take_rest(maxlen, buffer) : super
      end

      def readpartial(maxlen, buffer = nil)
        @kino_rest ? take_rest(maxlen, buffer) : super
      end

      def sysread(maxlen, buffer = nil)
        @kino_rest ? take_rest(maxlen, buffer) : super
      end

      def recv(maxlen, flags = 0, buffer = nil)
        @kino_rest ? take_rest(maxlen, buffer) : super
      end

      def recv_nonblock(maxlen, flags = 0, buffer = nil, exception: true)
        @kino_rest ? take_rest(maxlen, buffer) : super
      end

      # read(n) and read: the rest first, then the socket's bytes.
      def read(length = nil, buffer = nil)
        return super unless @kino_rest
        return (buffer ? buffer.replace("") : +"") if length&.zero?

        head = take_rest(length || @kino_rest.bytesize, nil)
        more = length ? length - head.bytesize : nil
        tail = more&.zero? ? nil : super(more)
        head << tail if tail
        buffer ? buffer.replace(head) : head
      end

      def wait_readable(timeout = nil)
        @kino_rest ? self : super
      end

      private

      def take_rest(maxlen, buffer)
        chunk = @kino_rest.byteslice(0, maxlen)
        @kino_rest = @kino_rest.bytesize > maxlen ? @kino_rest.byteslice(maxlen..) : nil
        buffer ? buffer.replace(chunk) : chunk
      end
    end
  end
end
