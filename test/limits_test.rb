# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "rbconfig"

# Resource limits under hostile load: slow clients, the connection cap,
# running out of file descriptors.
class LimitsTest < Minitest::Test
  include KinoTest
  include KinoProcess

  # 200 clients dribbling one header byte at a time hold connections, not
  # workers: a normal client is served while they are all still open.
  def test_slow_header_dribblers_do_not_starve_a_normal_client
    serve(->(_env) { [200, {}, ["served"]] }, workers: 1, threads: 1) do |server|
      head = "GET /slow HTTP/1.1\r\nHost: x\r\nX-Padding: #{'p' * 200}\r\n\r\n"
      slow = Array.new(200) { connect(server.port) }
      stop = false
      dribbler = Thread.new do
        offset = 0
        until stop || offset >= head.bytesize - 1 # never complete a head
          slow.each { |s| s.write(head.byteslice(offset)) }
          offset += 1
          sleep 0.01
        end
      end
      sleep 0.2
      10.times { assert_equal "served", get(server.port).body }
      assert dribbler.alive?, "the slow clients must still be dribbling"
      assert_operator server.stats[:connections], :>=, 200
      stop = true
      dribbler.join
      slow.each(&:close)
    end
  end

  def test_header_timeout_is_a_total_deadline_dribbling_cannot_extend
    serve(->(_env) { [200, {}, ["never"]] }, header_timeout: 0.5) do |server|
      socket = connect(server.port)
      t0 = monotonic
      response = nil
      "GET / HTTP/1.1\r\nHost: x\r\nX-Long: #{'y' * 100}".each_char do |ch|
        socket.write(ch)
        sleep 0.02
        break if socket.wait_readable(0) && (response = read_all(socket, timeout: 1))
      rescue Errno::EPIPE, Errno::ECONNRESET
        break
      end
      response ||= read_all(socket, timeout: 2)
      assert_operator monotonic - t0, :<, 2.0
      assert_equal 408, parse_responses(response).first&.status
      socket.close
    end
  end

  # At max_connections accepting pauses (the kernel backlog holds the
  # rest), and resumes when a connection closes.
  # Busy connections (requests in flight) cannot make way: at the cap the
  # next client waits in the backlog until one closes. (Idle ones can:
  # starvation_test.rb.)
  def test_max_connections_pauses_and_resumes_accepting
    gate = Queue.new
    app = lambda do |env|
      gate.pop if env["PATH_INFO"].start_with?("/held")
      [200, {}, [env["PATH_INFO"]]]
    end
    serve(app, max_connections: 3, threads: 3) do |server|
      held = Array.new(3) do |i|
        socket = connect(server.port)
        socket.write("GET /held#{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        socket
      end
      assert wait_until { server.stats[:in_flight] == 3 }, "three requests in flight"
      waiting = connect(server.port) # completes in the backlog, not accepted
      waiting.write("GET /waiting HTTP/1.1\r\nHost: x\r\n\r\n")
      refute waiting.wait_readable(0.5), "a fourth connection must wait for a free slot"
      assert_equal 3, server.stats[:connections]
      gate << :go
      assert_equal "/waiting", read_response(waiting, timeout: 5).body
      2.times { gate << :go }
      [*held, waiting].each(&:close)
    end
  end

  # Out of file descriptors, the server backs off instead of spinning on
  # accept, and serves again once descriptors are free.
  def test_emfile_backs_off_without_spinning
    # Under `make test SANITIZE=1` Ruby itself runs with the ASan runtime
    # preloaded, and its own thread machinery misbehaves once descriptors
    # run out (threads appear and spin inside Ruby, not in Kino).
    skip "Ruby under the ASan preload cannot run out of descriptors" if ENV["LD_PRELOAD"].to_s.include?("asan")

    code = <<~RUBY
      Process.setrlimit(:NOFILE, 64)
      app = ->(_env) { [200, {}, ["ok"]] }
      Kino::Server.run(app, port: 0, workers: 1, threads: 1, mode: :threaded, max_connections: 10_000)
    RUBY
    out_r, out_w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, "-I", File.expand_path("../lib", __dir__), "-rkino", "-e", code,
                        out: out_w, err: File::NULL)
    out_w.close
    banner = +""
    Timeout.timeout(10) { banner << out_r.readpartial(4096) until banner.include?("Ctrl-C") }
    port = banner[/127\.0\.0\.1:(\d+)/, 1].to_i
    flood = Array.new(120) { connect(port) } # far more than 64 descriptors
    sleep 0.3
    cpu0 = cpu_seconds(pid)
    sleep 1.5
    busy = cpu_seconds(pid) - cpu0
    assert_operator busy, :<, 0.5, "the server spent #{busy}s of CPU in 1.5 s while out of descriptors"
    flood.each(&:close)
    assert_equal "ok", Timeout.timeout(10) { get(port).body }
  ensure
    kill_process(pid)
  end

  # utime + stime of a process, in seconds.
  def cpu_seconds(pid)
    fields = File.read("/proc/#{pid}/stat").split(") ").last.split
    (fields[11].to_i + fields[12].to_i).fdiv(Etc.sysconf(Etc::SC_CLK_TCK))
  end
end
