# frozen_string_literal: true

module Kino
  # The messages a :cluster worker process sends its master over their
  # control socket (its stats answers and final report): each one a
  # 4-byte big-endian length, then Marshal.dump of the message.
  #
  # A reader keeps the bytes of a frame it has not finished in its own
  # buffer, and takes a whole frame from it before it looks at the
  # clock. A deadline that passes in the middle of a frame (the length
  # read, the rest not yet) therefore loses nothing: the next #read
  # resumes where this one stopped. Dropping those bytes instead would
  # leave every later read starting inside a frame.
  class Frames
    # A frame longer than this means the stream is not ours: a stats
    # answer is a few KiB.
    MAX = 16 << 20

    # The bytes of one frame carrying +message+.
    def self.dump(message)
      data = Marshal.dump(message)
      [data.bytesize].pack("N") << data
    end

    def initialize(io)
      @io = io
      @buffer = +"".b
    end

    # The next message, or nil when +deadline+ (a CLOCK_MONOTONIC time)
    # passes first or the peer closed its end. Raises IOError on a frame
    # longer than MAX.
    def read(deadline)
      loop do
        message = take and return message
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        return nil if left <= 0 || !@io.wait_readable(left)

        chunk = @io.read_nonblock(65_536, exception: false)
        return nil if chunk.nil?

        @buffer << chunk unless chunk == :wait_readable
      end
    end

    private

    # A whole frame from the buffer, or nil while it holds less than one.
    def take
      return nil if @buffer.bytesize < 4

      size = @buffer.unpack1("N")
      raise IOError, "control frame of #{size} bytes (over #{MAX}): not a Kino worker's stream" if size > MAX
      return nil if @buffer.bytesize < 4 + size

      data = @buffer.byteslice(4, size)
      @buffer = @buffer.byteslice(4 + size, @buffer.bytesize - 4 - size)
      Marshal.load(data) # rubocop:disable Security/MarshalLoad -- our own child process
    end
  end
end
