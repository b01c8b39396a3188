# frozen_string_literal: true

require_relative "helper"

# The framing of a :cluster worker's control socket (lib/kino/frames.rb):
# a read whose deadline passes in the middle of a frame loses nothing.
class FramesTest < Minitest::Test
  def setup
    @master, @child = UNIXSocket.pair
    @inbox = Kino::Frames.new(@master)
  end

  def teardown
    [@master, @child].each { |io| io.close unless io.closed? }
  end

  def soon(seconds = 0.05)
    Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
  end

  def test_messages_in_order_from_one_write
    @child.write(Kino::Frames.dump([1, { served: 3 }]) + Kino::Frames.dump([2, { served: 4 }]))
    assert_equal [1, { served: 3 }], @inbox.read(soon(5))
    assert_equal [2, { served: 4 }], @inbox.read(soon(5))
    assert_nil @inbox.read(soon)
  end

  # A loaded child writes a frame in pieces; the master's deadline may
  # pass between them (cluster stats then said "unresponsive" for that
  # worker forever, every later read starting inside a frame).
  def test_a_deadline_mid_frame_keeps_the_partial_frame
    frame = Kino::Frames.dump([7, { served: 1, queue_wait_ms: { 1 => 0 } }])
    [0, 2, 4, 9, frame.bytesize - 1].each_cons(2) do |from, to| # the length split, then the data
      @child.write(frame.byteslice(from, to - from))
      assert_nil @inbox.read(soon), "no whole frame after #{to} of #{frame.bytesize} bytes"
    end
    @child.write(frame.byteslice(-1, 1) + Kino::Frames.dump([8, {}]))
    assert_equal [7, { served: 1, queue_wait_ms: { 1 => 0 } }], @inbox.read(soon(5))
    assert_equal [8, {}], @inbox.read(soon(5))
  end

  def test_a_closed_peer_reads_nil_after_its_last_frame
    @child.write(Kino::Frames.dump([0, { served: 9 }]))
    @child.close
    assert_equal [0, { served: 9 }], @inbox.read(soon(5))
    assert_nil @inbox.read(soon(5))
  end

  def test_an_impossible_length_is_an_error_not_a_wait
    @child.write([Kino::Frames::MAX + 1].pack("N"))
    error = assert_raises(IOError) { @inbox.read(soon(5)) }
    assert_match(/not a Kino worker's stream/, error.message)
  end
end
