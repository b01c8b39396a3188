# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "json"

# Logging over real sockets: the access log (exactly one line per request,
# canned answers included, text and JSON), Kino::Logger and its shareable
# Device from two ractors, drops counted when stdout is a pipe nobody
# reads, reopen after a rename on HUP, drain on shutdown, the notes that
# name the setting behind a canned answer, rack.errors and Kino.log.
class LogTest < Minitest::Test
  include TempDir
  include KinoTest
  include KinoProcess

  def path(name)
    File.join(@dir, name)
  end

  # Kino's own warn/error lines into a file for the block; returns them.
  def capture_kino_stderr
    sink = Kino::Native.log_open(path("kino-stderr.log"))
    Kino::Native.log_route(Kino::Native::LOG_STDOUT, sink)
    yield
    Kino::Native.log_flush(5.0)
    File.read(path("kino-stderr.log"))
  ensure
    Kino::Native.log_route(Kino::Native::LOG_STDOUT, Kino::Native::LOG_STDERR)
    Kino::Native.log_close(sink) if sink
  end

  TEXT_LINE = %r{\A(?<peer>\S+) \[\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT\] "(?<method>\S+) (?<target>\S+) (?<proto>\S+)" (?<status>\d{3}|-) (?<bytes>\d+) (?<ms>\d+\.\d)ms\z}

  # A known mix -- keep-alive and pipelined requests, a 404, canned 400s,
  # a 413 and a 503 -- gives exactly one line each, right after shutdown.
  def test_exact_line_count_for_a_known_mix_and_drain_on_shutdown
    log = path("access.log")
    gate = Queue.new
    app = lambda do |env|
      gate.pop if env["PATH_INFO"] == "/slow"
      [env["PATH_INFO"] == "/missing" ? 404 : 200, { "content-type" => "text/plain" }, ["ok"]]
    end
    stderr = capture_kino_stderr do
      serve(app, lint: false, workers: 1, threads: 1, queue_depth: 1, queue_timeout: 0.3,
                 max_body_size: 1000, log_requests: log) do |server|
        port = server.port
        # the only worker is busy, one request waits in the queue, the
        # next one waits for room and gets 503 after queue_timeout
        slow = Thread.new { get(port, "/slow") }
        sleep 0.2
        queued = Thread.new { get(port, "/queued") }
        sleep 0.1
        assert_equal 503, get(port, "/shed").status
        gate << :go
        assert_equal 200, slow.value.status
        assert_equal 200, queued.value.status
        10.times { |i| assert_equal 200, get(port, "/a?i=#{i}").status }
        assert_equal 404, get(port, "/missing").status
        socket = connect(port) # three pipelined requests on one connection
        socket.write("GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n" \
                     "GET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert_equal [200, 200, 200], parse_responses(read_all(socket)).map(&:status)
        socket.close
        3.times { assert_match(/\AHTTP\/1.1 400 /, raw(port, "GARBAGE\r\n\r\n")) }
        assert_match(/\AHTTP\/1.1 413 /, raw(port, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n"))
      end
    end
    lines = File.read(log).lines(chomp: true) # no sleep: shutdown drained them
    assert_equal 21, lines.size, lines.join("\n")
    parsed = lines.map { |line| line.match(TEXT_LINE) or flunk "not an access line: #{line.inspect}" }
    statuses = parsed.map { |m| m[:status].to_i }.tally
    assert_equal({ 200 => 15, 404 => 1, 503 => 1, 400 => 3, 413 => 1 }.sort, statuses.sort)
    assert(parsed.all? { |m| m[:peer] == "127.0.0.1" })
    assert_includes lines.grep(/ 503 /).first, '"GET /shed HTTP/1.1"'
    assert_includes lines.grep(/ 413 /).first, '"POST /up HTTP/1.1"'
    assert_includes lines.grep(/ 400 /).first, '"- - -"'
    ok = lines.grep(%r{"GET /a\?i=3 HTTP/1.1" 200}).first
    refute_nil ok
    assert_operator ok.match(TEXT_LINE)[:bytes].to_i, :>, 2, "bytes count the head too"
    # the notes: why, and which setting to change
    assert_match(/kino\[#{Process.pid}\] io-0: 413 for POST \/up from 127\.0\.0\.1: declared body of 60000000 bytes is over max_body_size \(1000 bytes\); raise max_body_size/, stderr)
    assert_match(/io-0: 503 for GET \/shed .*queue_timeout/, stderr)
    assert_equal 1, stderr.scan(/: 400 /).size, "three 400s in a second leave one note: #{stderr}"
  end

  # Hijacked requests leave their line too: a full hijack (status "-": the
  # app wrote its own response), a partial one, a 101 with a callable body.
  def test_hijacked_requests_are_logged
    log = path("hijack.log")
    app = lambda do |env|
      case env["PATH_INFO"]
      when "/full"
        io = env["rack.hijack"].call
        io.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        io.close
        [-1, {}, []]
      when "/partial" then [200, { "rack.hijack" => ->(io) { io.write("partial") && io.close } }, []]
      else [101, { "upgrade" => "echo", "connection" => "Upgrade" }, ->(io) { io.write("upgraded") && io.close }]
      end
    end
    serve(app, lint: false, log_requests: log) do |server|
      assert_match(/\r\n\r\nhi\z/, raw(server.port, "GET /full HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert_match(/partial\z/, raw(server.port, "GET /partial HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert_match(/upgraded\z/, raw(server.port, "GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"))
    end
    lines = File.read(log).lines(chomp: true)
    assert_equal 3, lines.size, lines.join("\n")
    assert_equal({ "/full" => "-", "/partial" => "200", "/up" => "101" },
                 lines.to_h { |l| (m = l.match(TEXT_LINE)) ? [m[:target], m[:status]] : flunk(l) })
  end

  def test_json_lines_parse_with_every_field
    log = path("access.json")
    app = ->(_env) { [201, { "content-type" => "text/plain" }, ["created"]] }
    serve(app, lint: false, log_requests: log, log_format: :json) do |server|
      get(server.port, "/items?x=1&y=%22", "X-Request-Id" => "req-42")
      get(server.port, "/plain")
      raw(server.port, "GET / HTTP/9.0\r\n\r\n")
    end
    records = File.read(log).lines.map { |line| JSON.parse(line) }
    assert_equal 3, records.size
    first = records.find { |r| r["path"] == "/items" }
    assert_equal({ "remote_addr" => "127.0.0.1", "method" => "GET", "path" => "/items", "query" => "x=1&y=%22",
                   "protocol" => "HTTP/1.1", "status" => 201, "request_id" => "req-42" },
                 first.slice("remote_addr", "method", "path", "query", "protocol", "status", "request_id"))
    assert_match(/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/, first["time"])
    assert_kind_of Integer, first["bytes"]
    assert_kind_of Numeric, first["duration_ms"]
    refute records.find { |r| r["path"] == "/plain" }.key?("request_id")
    assert_equal 505, records.last["status"]
  end

  # One frozen, shareable Device serves two ractors: 400 lines, all whole.
  def test_device_lines_from_two_ractors_are_all_intact
    device = Kino::Logger::Device.new(path("ractors.log"))
    assert Ractor.shareable?(device)
    experimental = Warning[:experimental]
    Warning[:experimental] = false
    ractors = 2.times.map do |r|
      Ractor.new(device, r) do |dev, id|
        200.times { |i| dev.write("ractor-#{id} line-#{i} #{'x' * (i * 7 % 900)}\n") }
        :done
      end
    end
    Warning[:experimental] = experimental
    ractors.each { |ractor| ractor.respond_to?(:value) ? ractor.value : ractor.take }
    device.flush(5.0)
    lines = File.read(path("ractors.log")).lines(chomp: true)
    assert_equal 400, lines.size
    lines.each do |line|
      m = line.match(/\Aractor-(\d) line-(\d+) (x*)\z/) or flunk "torn line: #{line[0, 80].inspect}"
      assert_equal m[2].to_i * 7 % 900, m[3].size
    end
    assert_equal 200, lines.count { |l| l.start_with?("ractor-0 ") }
    device.close
  end

  def test_kino_logger_is_a_logger_with_close_and_reopen
    logger = Kino::Logger.new(path("app.log"), progname: "app")
    assert_kind_of ::Logger, logger
    logger.info("first")
    logger.debug { "lazy" }
    logger.device.flush
    File.rename(path("app.log"), path("app.log.1"))
    logger.reopen
    logger.warn("second")
    logger.close
    logger.error("ignored after close")
    assert_match(/\AI, \[.*\]  INFO -- app: first\nD, .* DEBUG -- app: lazy\n\z/, File.read(path("app.log.1")))
    assert_match(/\AW, \[.*\]  WARN -- app: second\n\z/, File.read(path("app.log")))
  end

  # stdout is a pipe nobody reads: requests are still served, and the
  # lines that did not fit are dropped and counted.
  def test_drops_are_counted_when_stdout_is_an_unread_pipe
    script = <<~RUBY
      app = ->(env) { [200, {}, [env["PATH_INFO"] == "/dropped" ? Kino::Native.log_dropped.to_s : "ok"]] }
      server = Kino::Server.new(app, port: 0, workers: 1, threads: 2, mode: :threaded, log_requests: true).start
      $stderr.puts "port \#{server.port}"
      sleep
    RUBY
    out_r, out_w = IO.pipe # never read
    err_r, err_w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, "-I", File.expand_path("../lib", __dir__), "-rkino", "-e", script,
                        out: out_w, err: err_w)
    out_w.close
    err_w.close
    port = Timeout.timeout(20) { err_r.gets[/port (\d+)/, 1].to_i }
    long = "/#{'p' * 1500}" # several ring slots per line: the ring fills sooner
    socket = connect(port)
    3000.times do |i|
      socket.write("GET #{long}?#{i} HTTP/1.1\r\nHost: x\r\n\r\n")
      assert_equal "ok", read_response(socket, timeout: 20).body
    end
    socket.close
    dropped = get(port, "/dropped").body.to_i
    assert_operator dropped, :>, 0
  ensure
    kill_process(pid)
    out_r&.close
    err_r&.close
  end

  # kino in a child process: HUP reopens the access log after logrotate
  # renamed it; TERM drains every line before exit.
  def test_hup_reopens_after_a_rename_and_term_drains
    log = path("access.log")
    File.write(path("config.ru"), "run ->(env) { [200, {}, ['hi']] }\n")
    cmd = [RbConfig.ruby, "-I", File.expand_path("../lib", __dir__), File.expand_path("../bin/kino", __dir__),
           "-p", "0", "-m", "threaded", "-w", "1", "--log-requests=#{log}"]
    output = with_server(cmd, dir: @dir) do |port, banner, pid|
      assert_match(/\Akino\[#{pid}\] main: Kino /, banner)
      assert_equal 200, get(port, "/before").status
      sleep 0.3 until File.size?(log)
      File.rename(log, "#{log}.1")
      Process.kill("HUP", pid)
      Timeout.timeout(10) { sleep 0.05 until File.exist?(log) }
      5.times { assert_equal 200, get(port, "/after").status }
    end
    assert_match(/main: HUP: reopened 1 log file/, output)
    assert_equal ["/before"], File.read("#{log}.1").lines.map { |l| l[/"GET (\S+)/, 1] }
    assert_equal ["/after"] * 5, File.read(log).lines.map { |l| l[/"GET (\S+)/, 1] }
    assert_match(/main: TERM received/, output)
  end

  # In :cluster every worker process has its own sink: HUP to the master
  # reaches them too, and once each has reopened, every line goes to the
  # new file.
  def test_hup_reopens_the_files_of_cluster_workers
    log = path("access.log")
    File.write(path("config.ru"), "run ->(env) { [200, {}, ['hi']] }\n")
    cmd = [RbConfig.ruby, "-I", File.expand_path("../lib", __dir__), File.expand_path("../bin/kino", __dir__),
           "-p", "0", "-m", "cluster", "-w", "2", "-t", "1", "--log-requests=#{log}"]
    output = with_server(cmd, dir: @dir) do |port, _banner, pid|
      4.times { assert_equal 200, get(port, "/before").status }
      sleep 0.3 until File.size?(log)
      File.rename(log, "#{log}.1")
      Process.kill("HUP", pid)
      Timeout.timeout(10) { sleep 0.05 until File.exist?(log) }
      # until both workers reopened, a line may still land in the old file
      Timeout.timeout(20) do
        loop do
          before = File.read("#{log}.1").lines.size
          10.times { assert_equal 200, get(port, "/after").status }
          sleep 0.5 # the flushers write within milliseconds
          break if File.read("#{log}.1").lines.size == before
        end
      end
    end
    assert_equal 2, output.scan(/worker-\d+: HUP: reopened 1 log file/).size, output
    assert_operator File.read(log).lines.count { |l| l.include?('"GET /after') }, :>=, 10
  end

  def test_rack_errors_and_kino_log_lines_carry_the_prefix
    app = lambda do |env|
      env["rack.errors"].puts("from the app")
      env["rack.errors"].write("two\nlines\n")
      [200, {}, ["ok"]]
    end
    text = capture_kino_stderr do
      serve(app) { |server| get(server.port) }
      Logger.new(Kino::ErrorStream.for_worker(7)).warn("through ::Logger") # Rack::Logger, Sinatra
      Kino.log.warn("main", "a warning")
      Kino.log.error("worker-3", "an error")
    end
    pid = Process.pid
    assert_includes text, "kino[#{pid}] worker-0: from the app\n"
    assert_includes text, "kino[#{pid}] worker-0: two\nkino[#{pid}] worker-0: lines\n"
    assert_includes text, "kino[#{pid}] main: a warning\n"
    assert_includes text, "kino[#{pid}] worker-3: an error\n"
    assert_match(/^kino\[#{pid}\] worker-7: W, \[.*\]  WARN -- : through ::Logger$/, text)
  end

  # A plain fork: the child's lines arrive through the child's own flusher.
  def test_a_forked_child_logs
    device = Kino::Logger::Device.new(path("fork.log"))
    device.write("parent before\n")
    pid = fork do
      10.times { |i| device.write("child #{i}\n") }
      device.flush(5.0)
      exit!(0)
    end
    Process.wait(pid)
    device.write("parent after\n")
    device.flush(5.0)
    lines = File.read(path("fork.log")).lines(chomp: true)
    assert_equal ["parent before", *10.times.map { |i| "child #{i}" }, "parent after"].sort, lines.sort
    assert_equal 1, lines.count("parent before")
    device.close
  end

  def test_options_are_validated
    assert_raises(ArgumentError) { Kino::Options.resolve(log_requests: "") }
    assert_raises(ArgumentError) { Kino::Options.resolve(log_requests: 1) }
    assert_raises(ArgumentError) { Kino::Options.resolve(log_format: :xml) }
    assert_equal :json, Kino::Options.resolve(log_format: "json")[:log_format]
    error = assert_raises(Kino::Error) { Kino::Server.new(->(_) {}, mode: :threaded, log_requests: "/nonexistent/dir/a.log").start }
    assert_match(%r{cannot open /nonexistent/dir/a\.log}, error.message)
  end
end
