# frozen_string_literal: true

require_relative "helper"
require "tmpdir"

Warning[:experimental] = false

# How requests reach the workers: the shared queue, lanes (lanes: true)
# and batches (batch: N), in :threaded and :ractor modes, over real
# sockets. Behaviour only; the speed is bench/'s business.
class DispatchTest < Minitest::Test
  include KinoTest

  # Shareable (a module), so it runs in worker ractors too. /hold?FILE
  # waits until FILE exists: a stuck handler the test releases.
  module App
    def self.call(env)
      case env["PATH_INFO"]
      when "/hold"
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 30
        sleep 0.01 until File.exist?(env["QUERY_STRING"]) || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        [200, {}, ["released"]]
      when "/error" then raise "app error"
      when "/slow" then sleep 0.2
                        [200, {}, ["slow"]]
      else [200, {}, ["#{env['PATH_INFO']} #{env['rack.input'].read}"]]
      end
    end
  end

  VARIANTS = [{ lanes: false, batch: 1 }, { lanes: true, batch: 1 }, { lanes: false, batch: 4 },
              { lanes: true, batch: 4 }].freeze

  # Waits for the block to be true (KinoTest#wait_until); fails after a
  # generous 30 s.
  def wait_until(&) = assert(super(timeout: 30, &), "condition not met within 30 s")

  def options(mode, variant)
    threads = mode == :ractor ? 1 : 3
    { mode: mode, workers: 2, threads: threads, lint: false, on_error: nil }.merge(variant)
  end

  # Many clients on keep-alive connections at once, and a pipelined
  # burst: every answer is the right one, pipelined ones in order.
  def test_every_variant_serves_concurrent_and_pipelined_requests_in_both_modes
    %i[threaded ractor].each do |mode|
      VARIANTS.each do |variant|
        serve(App, **options(mode, variant)) do |server|
          label = "#{mode} #{variant}"
          clients = Array.new(6) do |i|
            Thread.new do
              socket = connect(server.port)
              Array.new(25) do |n|
                socket.write("POST /c#{i} HTTP/1.1\r\nHost: x\r\nContent-Length: #{n.to_s.size}\r\n\r\n#{n}")
                read_response(socket).body
              end
            ensure
              socket&.close
            end
          end
          clients.each_with_index do |client, i|
            assert_equal Array.new(25) { |n| "/c#{i} #{n}" }, client.value, label
          end

          burst = Array.new(16) { |n| "GET /p#{n} HTTP/1.1\r\nHost: x\r\n\r\n" }.join
          data = raw(server.port, "#{burst}GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
          assert_equal [*Array.new(16) { |n| "/p#{n} " }, "/last "], parse_responses(data).map(&:body), label
        end
      end
    end
  end

  # One handler never returns (until the test lets it): with lanes, the
  # requests that arrive while it is stuck -- some may have been put in
  # its lane -- are still answered by the other workers.
  def test_a_stuck_handler_does_not_stop_service_with_lanes
    %i[threaded ractor].each do |mode|
      Dir.mktmpdir do |dir|
        release = File.join(dir, "release")
        serve(App, **options(mode, lanes: true)) do |server|
          # a burst on other connections right behind it (into its lane,
          # when its worker takes it first), then one at a time
          sockets = Array.new(9) { connect(server.port) }
          stuck, *burst = sockets
          stuck.write("GET /hold?#{release} HTTP/1.1\r\nHost: x\r\n\r\n")
          burst.each_with_index { |s, n| s.write("GET /b#{n} HTTP/1.1\r\nHost: x\r\n\r\n") }
          burst.each_with_index do |socket, n|
            assert_equal "/b#{n} ", read_response(socket, timeout: 10).body, "#{mode}: burst request #{n}"
            socket.close
          end
          10.times { |n| assert_equal "/s#{n} ", get(server.port, "/s#{n}").body, "#{mode}: request #{n}" }
          assert_equal 1, server.stats[:in_flight], "#{mode}: the stuck one is still held"
          File.write(release, "")
          assert_equal "released", read_response(stuck, timeout: 10).body
          stuck.close
        end
      end
    end
  end

  # batch 4: one worker thread takes a stuck request and three more in
  # one visit; those three are served by the other thread as soon as it is
  # free (it takes them from the batch), not after the stuck one. Each
  # request is sent once the previous one is queued, so the queue's order,
  # and so the batch, is known: [stuck, /f0, /f1, /f2].
  def test_requests_batched_behind_a_stuck_one_are_served_by_a_free_worker
    { threaded: { workers: 1, threads: 2 }, ractor: { workers: 2, threads: 1 } }.each do |mode, shape|
      Dir.mktmpdir do |dir|
        gate = ->(name) { File.join(dir, name) }
        serve(App, mode: mode, batch: 4, lint: false, on_error: nil, **shape) do |server|
          first, second = %w[a b].map do |name|
            connect(server.port).tap { |s| s.write("GET /hold?#{gate.(name)} HTTP/1.1\r\nHost: x\r\n\r\n") }
          end
          wait_until { server.stats[:in_flight] == 2 } # both threads held
          queued = ["/hold?#{gate.('stuck')}", "/f0", "/f1", "/f2"].each_with_index.map do |path, n|
            socket = connect(server.port)
            socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until { server.stats[:queued] == n + 1 }
            socket
          end
          stuck, *fast = queued
          File.write(gate.("a"), "")
          assert_equal "released", read_response(first, timeout: 10).body
          # its thread took all four in one visit: in flight, none queued
          wait_until { server.stats.values_at(:queued, :in_flight) == [0, 5] }
          File.write(gate.("b"), "")
          assert_equal "released", read_response(second, timeout: 10).body
          fast.each_with_index do |socket, n|
            assert_equal "/f#{n} ", read_response(socket, timeout: 10)&.body, "#{mode}: /f#{n} waited for the stuck one"
          end
          assert_equal 1, server.stats[:in_flight], "#{mode}: the stuck one is still held"
          File.write(gate.("stuck"), "")
          assert_equal "released", read_response(stuck, timeout: 10).body
          [first, second, *queued].each(&:close)
        end
      end
    end
  end

  def test_lane_depths_is_an_array_with_one_entry_per_worker_thread
    serve(App, **options(:threaded, lanes: true)) do |server|
      assert_equal "/x ", get(server.port, "/x").body
      wait_until { server.stats[:lane_depths].size == 6 } # every thread has started
      depths = server.stats[:lane_depths]
      assert_kind_of Array, depths
      assert_equal 6, depths.size # 2 workers x 3 threads
      assert(depths.all? { |d| d.is_a?(Integer) && d >= 0 })
      assert_match(/lane_depths=\[/, server.stats_line)
    end
    serve(App, **options(:ractor, lanes: true)) do |server|
      assert_equal "/x ", get(server.port, "/x").body
      wait_until { server.stats[:lane_depths].size == 2 }
      assert_equal [0, 0], server.stats[:lane_depths]
    end
    serve(App, **options(:threaded, lanes: false)) do |server|
      refute server.stats.key?(:lane_depths)
    end
  end

  # Requests still queued (in lanes, in batches) when a graceful stop
  # begins are served before it ends; past the deadline what is left is
  # answered with 500 and the stop returns.
  def test_shutdown_serves_queued_work_and_aborts_the_rest
    [{ lanes: true, batch: 1 }, { lanes: false, batch: 4 }, { lanes: true, batch: 4 }].each do |variant|
      Dir.mktmpdir do |dir|
        # the one worker is held until the test releases it, so the other
        # three stay queued however slowly a loaded machine connects them
        gate = File.join(dir, "go")
        server = Kino::Server.new(App, mode: :threaded, workers: 1, threads: 1, **variant).start
        held = connect(server.port).tap { |s| s.write("GET /hold?#{gate} HTTP/1.1\r\nHost: x\r\n\r\n") }
        wait_until { server.stats[:in_flight] == 1 }
        sockets = Array.new(3) { connect(server.port).tap { |s| s.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") } }
        wait_until { server.stats[:in_flight] + server.stats[:queued] == 4 }
        File.write(gate, "")
        server.shutdown(timeout: 20)
        assert_equal [200, "released"], read_response(held, timeout: 10).then { |r| [r.status, r.body] }, variant.inspect
        held.close
        sockets.each do |socket|
          response = read_response(socket, timeout: 10)
          assert_equal [200, "slow", "close"], [response.status, response.body, response["connection"]], variant.inspect
          socket.close
        end
      end

      Dir.mktmpdir do |dir|
        gate = File.join(dir, "go") # never opened before the abort
        server = Kino::Server.new(App, mode: :threaded, workers: 1, threads: 1, **variant).start
        sockets = [connect(server.port).tap { |s| s.write("GET /hold?#{gate} HTTP/1.1\r\nHost: x\r\n\r\n") }]
        wait_until { server.stats[:in_flight] == 1 }
        sockets += Array.new(5) { connect(server.port).tap { |s| s.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") } }
        wait_until { server.stats[:in_flight] + server.stats[:queued] == 6 }
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        capture_stderr(true) { server.shutdown(timeout: 0.1) }
        assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 10, variant.inspect
        statuses = sockets.map { |socket| read_response(socket, timeout: 10).status.tap { socket.close } }
        assert_includes statuses, 500, variant.inspect
        assert_empty statuses - [200, 500], variant.inspect
      ensure
        File.write(gate, "") if gate # the held worker thread ends
      end
    end
  end

  # Pipelined responses held back to share one send (doc/dispatch.md,
  # the carry) still go out first, and whole, when a later request fails.
  def test_held_back_pipelined_responses_come_before_a_later_error
    %i[threaded ractor].each do |mode|
      serve(App, **options(mode, {}), quiet: true) do |server|
        burst = %w[/a /b /error /c].map { |path| "GET #{path} HTTP/1.1\r\nHost: x\r\n\r\n" }.join
        responses = parse_responses(raw(server.port, burst))
        assert_equal [[200, "/a "], [200, "/b "], [500, "Internal Server Error\n"]],
                     responses.map { |r| [r.status, r.body] }, mode.to_s
        assert_equal "close", responses.last["connection"]
      end
    end
  end

  def test_lanes_and_batch_are_validated
    [{ lanes: 1 }, { lanes: nil }, { batch: 0 }, { batch: 65 }, { batch: 2.0 }, { batch: "4" }].each do |bad|
      error = assert_raises(ArgumentError) { Kino::Server.new(App, **bad) }
      assert_match(/invalid #{bad.keys.first}/, error.message)
    end
  end
end
