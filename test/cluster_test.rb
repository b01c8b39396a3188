# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"

# mode :cluster over real sockets: `kino -m cluster` forks worker
# processes that serve from the master's listener; the master replaces
# dead ones, grows and shrinks on TTIN/TTOU, drains them on TERM, runs the
# hooks, and aggregates their stats (Kino::Server#stats, USR1).
class ClusterTest < Minitest::Test
  include TempDir
  include KinoTest
  include KinoProcess

  # Answers with its pid; /slow sleeps first (SLOW seconds, default 1),
  # after creating the file SLOW_STARTED names, if any.
  APP = <<~RUBY
    run lambda { |env|
      if env["PATH_INFO"] == "/slow"
        File.write(ENV["SLOW_STARTED"], "") if ENV["SLOW_STARTED"]
        sleep Float(ENV.fetch("SLOW", "1"))
      end
      [200, { "content-type" => "text/plain" }, [Process.pid.to_s]]
    }
  RUBY

  def setup
    File.write(File.join(@dir, "config.ru"), APP)
    @lines = {}
  end

  # with_server with a timeout generous for a loaded machine.
  def with_server(cmd, timeout: 45, **options, &block)
    super(cmd, timeout: timeout, **options, &block)
  end

  def kino_cluster(*args)
    [RbConfig.ruby, KINO, "-p", "0", "-m", "cluster", *args]
  end

  # The pids of +pid+'s child processes (forked from any of its threads).
  def children_of(pid)
    Dir["/proc/#{pid}/task/*/children"].flat_map { |f| File.read(f).split.map(&:to_i) }.sort
  rescue Errno::ENOENT
    []
  end

  # The next line of +io+ matching +pattern+ (lines before it are skipped).
  def line_matching(io, pattern, timeout = 15)
    buffer = @lines[io] ||= +""
    Timeout.timeout(timeout) do
      loop do
        while (newline = buffer.index("\n"))
          line = buffer.slice!(0..newline)
          return line if line.match?(pattern)
        end
        buffer << io.readpartial(4096)
      end
    end
  rescue EOFError, Timeout::Error => e
    flunk "no line matching #{pattern.inspect} (#{e.class}); left: #{buffer}"
  end

  # USR1's stats line, parsed: the key=value pairs and the worker rows
  # ({worker:, pid:, served:}).
  def usr1_stats(pid, out)
    Process.kill("USR1", pid)
    line = line_matching(out, /\Akino\[#{pid}\] main: stats:/)
    fields = line.scan(/(\w+)=(\S+)/).to_h
    rows = line.scan(/(\d+)\[pid (\d+)\]:(\d+|\w+)/).map do |worker, pid_, served|
      { worker: worker.to_i, pid: pid_.to_i, served: served.match?(/\A\d+\z/) ? served.to_i : served.to_sym }
    end
    [fields, rows]
  end

  # Fresh connections from several threads until every pid in +pids+ has
  # answered (or +timeout+ passes); the pids that answered.
  def pids_answering(port, pids, timeout: 15)
    seen = []
    lock = Mutex.new
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    clients = Array.new(8) do
      Thread.new do
        until Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline || lock.synchronize { (pids - seen).empty? }
          status, body = http_get(port, "/")
          lock.synchronize { seen |= [body.to_i] } if status == 200
        end
      end
    end
    clients.each(&:join)
    seen.sort
  end

  def test_two_workers_boot_and_both_serve_and_usr1_aggregates
    with_server(kino_cluster("-w", "2", "-t", "2"), dir: @dir) do |port, banner, master, out|
      assert_match(/mode: cluster, 2 workers \(processes\) × 2 threads/, banner)
      workers = wait_until { (pids = children_of(master)).size == 2 && pids }
      assert_equal 2, workers.size, "two worker processes"
      assert_equal workers, pids_answering(port, workers), "both workers serve"
      # a worker that did not answer the master within its stats timeout
      # (a loaded machine) shows as unresponsive: ask again
      fields, rows = wait_until { (s = usr1_stats(master, out)) && s[1].all? { |r| r[:served].is_a?(Integer) } && s }
      assert_equal "cluster", fields["mode"]
      assert_equal workers, rows.map { |r| r[:pid] }.sort
      assert_equal [0, 1], rows.map { |r| r[:worker] }.sort
      assert_equal fields["served"].to_i, rows.sum { |r| r[:served] }
      assert_operator fields["served"].to_i, :>=, 2
      refute_includes workers, master, "the master never serves"
    end
  end

  def test_a_killed_worker_is_replaced_and_counted
    with_server(kino_cluster("-w", "2", "-t", "1"), dir: @dir) do |port, _, master, out|
      before = wait_until { (pids = children_of(master)).size == 2 && pids }
      Process.kill("KILL", before.first)
      after = wait_until { (pids = children_of(master)).size == 2 && !pids.include?(before.first) && pids }
      assert after, "a new worker replaces the killed one"
      assert_includes line_matching(out, /worker process \d died/), "killed by SIGKILL"
      fields, rows = wait_until { (s = usr1_stats(master, out)) && s[1].size == 2 && s }
      assert_equal "1", fields["respawns"]
      assert_equal after, rows.map { |r| r[:pid] }.sort
      assert_equal [200, after.last.to_s], http_get(port).then { |s, b| [s, after.include?(b.to_i) ? after.last.to_s : b] }
    end
  end

  def test_ttin_and_ttou_change_the_number_of_workers
    with_server(kino_cluster("-w", "1", "-t", "1"), dir: @dir) do |port, _, master, out|
      assert wait_until { children_of(master).size == 1 }
      Process.kill("TTIN", master)
      assert wait_until { children_of(master).size == 2 }, "TTIN: two workers"
      Process.kill("TTIN", master) # one at a time: the kernel merges a signal sent while one is pending
      three = wait_until { (pids = children_of(master)).size == 3 && pids }
      assert three, "TTIN again: three workers"
      fields, = wait_until { (s = usr1_stats(master, out)) && s[1].size == 3 && s }
      assert_equal "3", fields["workers"]
      Process.kill("TTOU", master)
      two = wait_until { (pids = children_of(master)).size == 2 && pids }
      assert two, "TTOU: two workers"
      assert_equal two, three.first(2), "the highest-numbered worker is the one that goes"
      fields, rows = wait_until { (s = usr1_stats(master, out)) && s[1].size == 2 && s }
      assert_equal ["2", "0"], [fields["workers"], fields["respawns"]], "a retired worker is not replaced"
      assert_equal [0, 1], rows.map { |r| r[:worker] }
      Process.kill("TTOU", master)
      assert wait_until { children_of(master).size == 1 }
      Process.kill("TTOU", master)
      fields, = usr1_stats(master, out) # handled after the TTOU: the supervisor is done with it
      assert_equal "1", fields["workers"], "never fewer than one"
      assert_equal 1, children_of(master).size
      assert_equal 200, http_get(port).first
    end
  end

  def test_term_drains_in_flight_requests_in_every_worker
    output = with_server(kino_cluster("-w", "2", "-t", "2"), dir: @dir, signal: nil) do |port, _, master, out|
      assert wait_until { children_of(master).size == 2 }
      clients = Array.new(4) { Thread.new { http_get(port, "/slow") } }
      assert wait_until { usr1_stats(master, out)[0].values_at("in_flight", "queued").sum(&:to_i) == 4 }
      Process.kill("TERM", master)
      results = clients.map(&:value)
      assert_equal [200] * 4, results.map(&:first), "requests in flight and queued finish"
    end
    assert_includes output, "TERM received"
  end

  def test_a_second_term_stops_at_once
    File.write(File.join(@dir, "kino.rb"), "shutdown_timeout 60\n")
    started = File.join(@dir, "started")
    env = { "SLOW" => "60", "SLOW_STARTED" => started }
    with_server(kino_cluster("-w", "2", "-t", "1"), dir: @dir, env: env, status: 1) do |port, _, master, out|
      workers = wait_until { (pids = children_of(master)).size == 2 && pids }
      client = Thread.new do
        http_get(port, "/slow")
      rescue StandardError
        nil
      end
      # the request is in the app (else the first TERM ends both at once),
      # and the master took the first TERM (two pending TERMs are one)
      assert wait_until(timeout: 30) { File.exist?(started) }, "/slow reached the app"
      Process.kill("TERM", master)
      line_matching(out, /TERM received, finishing requests/)
      Process.kill("TERM", master) # with_server's TERM is the third
      assert wait_until(timeout: 10) { workers.none? { |pid| alive?(pid) } }, "the workers are gone"
      client.kill
    end
  end

  def alive?(pid)
    Process.kill(0, pid)
    !File.read("/proc/#{pid}/stat").split[2].start_with?("Z")
  rescue Errno::ESRCH, Errno::ENOENT
    false
  end

  # before_fork in the master, on_worker_boot in each worker process (once,
  # not per thread), on_worker_exit in the master when a worker ends.
  def test_hooks_run_where_they_belong
    log = File.join(@dir, "hooks.log")
    File.write(File.join(@dir, "kino.rb"), <<~RUBY)
      before_fork { File.write(#{log.inspect}, "before_fork \#{Process.pid}\\n", mode: "a") }
      on_worker_boot { |w| File.write(#{log.inspect}, "boot \#{w} \#{Process.pid}\\n", mode: "a") }
      on_worker_exit { |w, e| File.write(#{log.inspect}, "exit \#{w} \#{Process.pid} \#{e&.message}\\n", mode: "a") }
    RUBY
    with_server(kino_cluster("-w", "2", "-t", "3"), dir: @dir) do |_, _, master|
      workers = wait_until { (pids = children_of(master)).size == 2 && pids }
      assert wait_until { File.read(log).scan(/^boot/).size == 2 }
      Process.kill("KILL", workers.first)
      assert wait_until { File.read(log).scan(/^boot/).size == 3 }
      lines = File.read(log).lines.map(&:split)
      assert_equal [["before_fork", master.to_s]] * 3, lines.select { |l| l[0] == "before_fork" }
      boots = lines.select { |l| l[0] == "boot" }
      assert_equal %w[0 1], boots.first(2).map { |l| l[1] }.sort
      refute_includes boots.map { |l| l[2].to_i }, master
      exit_line = lines.find { |l| l[0] == "exit" }
      assert_equal master.to_s, exit_line[2], "on_worker_exit runs in the master"
      assert_includes exit_line.join(" "), "killed by SIGKILL"
    end
    lines = File.read(log).lines.map(&:split)
    assert_equal 3, lines.count { |l| l[0] == "exit" }, "clean exits at shutdown: nil error"
  end

  # preload true (the default) loads config.ru once, in the master;
  # preload false loads it in each worker process after the fork.
  def test_preload_loads_the_app_once_in_the_master_or_in_each_worker
    log = File.join(@dir, "loads.log")
    File.write(File.join(@dir, "config.ru"), "File.write(#{log.inspect}, \"\#{Process.pid}\\n\", mode: \"a\")\n#{APP}")
    with_server(kino_cluster("-w", "2", "-t", "1"), dir: @dir) do |_, _, master|
      assert wait_until { children_of(master).size == 2 }
      assert_equal [master], File.read(log).split.map(&:to_i)
    end
    File.delete(log)
    File.write(File.join(@dir, "kino.rb"), "preload false\n")
    with_server(kino_cluster("-w", "2", "-t", "1"), dir: @dir) do |port, _, master|
      workers = wait_until { (pids = children_of(master)).size == 2 && pids }
      assert wait_until { File.exist?(log) && File.read(log).split.size == 2 }
      assert_equal workers, File.read(log).split.map(&:to_i).sort
      assert_equal 200, http_get(port).first
    end
  end

  # A worker that cannot load the app dies while booting: it is retried
  # with a growing delay, never in a tight loop, and the master stays up.
  def test_a_worker_that_cannot_boot_is_retried_with_a_back_off
    File.write(File.join(@dir, "config.ru"), "raise 'no database'\n")
    File.write(File.join(@dir, "kino.rb"), "preload false\n")
    with_server(kino_cluster("-w", "1", "-t", "1"), dir: @dir) do |_, _, master, out|
      assert_includes line_matching(out, /failed: RuntimeError/), "no database"
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      line_matching(out, /died while booting/)
      sleep 1.0
      fields, = usr1_stats(master, out)
      elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      assert_operator fields["respawns"].to_i, :<=, 2 + (elapsed / 0.1).ceil, "not a tight loop"
      assert_operator fields["respawns"].to_i, :>=, 2
    end
  end

  # Workers serve a unix:// listener the master bound; one that drains and
  # exits (TTOU) leaves the socket file alone for the others.
  def test_a_unix_listener_outlives_a_worker_that_leaves
    path = File.join(@dir, "kino.sock")
    cmd = kino_cluster("-w", "2", "-t", "1", "-b", "tcp://127.0.0.1:0", "-b", "unix://#{path}")
    with_server(cmd, dir: @dir) do |_, banner, master|
      assert_includes banner, path
      assert wait_until { children_of(master).size == 2 }
      assert_equal "200", unix_get(path)
      Process.kill("TTOU", master)
      assert wait_until { children_of(master).size == 1 }
      sleep 0.2
      assert File.socket?(path), "the socket file is still there"
      3.times { assert_equal "200", unix_get(path) }
    end
    refute File.exist?(path), "the master removes it at exit"
  end

  def unix_get(path)
    socket = UNIXSocket.new(path)
    socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    Timeout.timeout(10) { socket.read }[%r{\AHTTP/1\.1 (\d+)}, 1]
  ensure
    socket&.close
  end

  # Kino::Server in this process: #stats aggregates the workers' counters
  # with one row per process (pid included), and #shutdown drains them.
  def test_server_stats_aggregate_the_worker_processes
    app = ->(_env) { [200, { "content-type" => "text/plain" }, [Process.pid.to_s]] }
    server = Kino::Server.new(app, mode: :cluster, workers: 2, threads: 2)
    server.start
    saved = $stderr
    $stderr = StringIO.new # the master's warning about the killed worker
    begin
      rows = wait_until { (s = server.stats[:per_worker]) && s.all? { |r| r[:state] == :serving } && s }
      pids = rows.map { |r| r[:pid] }.sort
      assert_equal pids, children_of(Process.pid) & pids
      assert_equal pids, pids_answering(server.port, pids)
      stats = server.stats
      threaded = Kino::Server.new(app, mode: :threaded, workers: 1, threads: 1).start
      same = threaded.stats.keys.sort
      threaded.shutdown(timeout: 1)
      assert_equal same, stats.keys.sort, "the same vocabulary as :threaded"
      assert_equal [:cluster, 2, 2], stats.values_at(:mode, :workers, :threads)
      assert_equal stats[:served], stats[:per_worker].sum { |r| r[:served] }
      assert_equal stats[:served], stats[:queue_wait_ms].values.sum
      assert_equal %i[worker pid state quarantined served in_flight busy_ms accepted connections respawns lane],
                   stats[:per_worker].first.keys
      served = stats[:served]
      Process.kill("KILL", pids.first)
      assert wait_until { server.stats[:respawns] == 1 && server.stats[:per_worker].all? { |r| r[:state] == :serving } }
      assert_operator server.stats[:served], :>=, served - stats[:per_worker].first[:served], "counters of a killed worker: its last answer"
    ensure
      server.shutdown(timeout: 5)
      $stderr = saved
    end
    assert_empty children_of(Process.pid) & pids
    assert_equal({ mode: :cluster, workers: 2, threads: 2, io_threads: 1, respawns: 1 }, server.stats.except(:log_dropped))
  end
end
