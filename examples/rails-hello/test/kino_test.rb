# frozen_string_literal: true

# The example under Kino, checked over real sockets, once per mode
# (KINO_MODES, default "threaded,cluster"): every feature the app has, as
# a browser or an ActionCable client would use it. Run by `make
# test-rails` (which installs the gems and prepares nothing else: the
# database is created here, in a temporary directory).
require "minitest/autorun"
require "digest"
require "fileutils"
require "open3"
require "tmpdir"
require_relative "support/client"
require_relative "support/cable_client"
require_relative "support/kino_server"

module RailsHello
  # One database and secret for the whole run; each mode boots its own server.
  module Setup
    DIR = Dir.mktmpdir("rails-hello-")
    ENV_VARS = {
      "RAILS_ENV" => "production",
      "SECRET_KEY_BASE" => SecureRandom.hex(64),
      "DATABASE_URL" => "sqlite3:#{File.join(DIR, 'production.sqlite3')}",
      "RAILS_MAX_THREADS" => "5",
      "RAILS_LOG_LEVEL" => "info"
    }.freeze
    SERVERS = {}

    # Creates the schema and the seed rows (bin/rails db:prepare), once.
    def self.database
      @database ||= begin
        output, status = Open3.capture2e(ENV_VARS, RbConfig.ruby, "bin/rails", "db:prepare", chdir: KinoServer::APP_DIR)
        raise "bin/rails db:prepare failed:\n#{output}" unless status.success?

        true
      end
    end

    # The running server for +mode+, started on first use.
    def self.server(mode, args)
      SERVERS[mode] ||= begin
        database
        KinoServer.new(args, env: ENV_VARS, log_path: File.join(DIR, "kino-#{mode}.log")).start
      end
    end

    Minitest.after_run do
      SERVERS.each_value(&:stop)
      FileUtils.rm_rf(DIR)
    end
  end

  # The checks, shared by every mode's test class.
  module Checks
    def setup
      @server = Setup.server(self.class::MODE, self.class::ARGS)
      @client = BrowserClient.new(@server.port)
    end

    # Failure messages carry the server's log.
    def diagnose
      yield
    rescue Minitest::Assertion, StandardError => e
      raise e.class, "#{e.message}\n--- kino log (#{self.class::MODE}) ---\n#{@server.log_tail}", e.backtrace
    end

    def test_text
      diagnose do
        response = @client.get("/hello")
        assert_equal "200", response.code
        assert_equal "Hello from Rails on Kino", response.body
        assert_match %r{\Atext/plain}, response["content-type"]
      end
    end

    def test_json
      diagnose do
        response = @client.get("/hello.json")
        assert_equal "200", response.code
        assert_match %r{\Aapplication/json}, response["content-type"]
        body = JSON.parse(response.body)
        assert_equal "world", body["hello"]
        assert_equal "7.2.4", body["rails"]
      end
    end

    def test_erb_page_with_layout
      diagnose do
        response = @client.get("/")
        assert_equal "200", response.code
        assert_match %r{\Atext/html}, response["content-type"]
        assert_includes response.body, "<h1>Hello from ERB</h1>"
        assert_match(/\d+ notes? in SQLite/, response.body)
        assert_match(/<meta name="csrf-token" content="[^"]+"/, response.body)
      end
    end

    def test_form_post_with_csrf_token_creates_a_record
      diagnose do
        token = @client.csrf_token("/notes/new")
        refute_nil token, "the form has an authenticity_token"
        title = "from the form #{SecureRandom.hex(4)}"
        response = @client.post_form("/notes", "authenticity_token" => token, "note[title]" => title)
        assert_equal "302", response.code, response.body
        assert_equal "/notes", URI(response["location"]).path
        assert_includes @client.get("/notes").body, title
      end
    end

    def test_form_post_without_a_valid_token_is_refused
      diagnose do
        @client.csrf_token("/notes/new") # the session exists; the token is withheld
        title = "forged #{SecureRandom.hex(4)}"
        assert_equal "422", @client.post_form("/notes", "note[title]" => title).code
        assert_equal "422", @client.post_form("/notes", "authenticity_token" => "x" * 44, "note[title]" => title).code
        refute_includes @client.get("/notes").body, title
      end
    end

    def test_multipart_upload
      diagnose do
        token = @client.csrf_token("/")
        bytes = Random.new(42).bytes(300_000)
        response = @client.post_multipart("/upload", { "authenticity_token" => token, "note" => "héllo" },
                                          "file" => ["random.bin", "application/octet-stream", bytes])
        assert_equal "200", response.code, response.body
        body = JSON.parse(response.body)
        assert_equal "random.bin", body["name"]
        assert_equal bytes.bytesize, body["size"]
        assert_equal Digest::SHA256.hexdigest(bytes), body["sha256"]
        assert_equal "héllo", body["note"]
      end
    end

    def test_send_file_with_a_pathname_has_a_content_length
      diagnose do
        readme = File.binread(File.join(KinoServer::APP_DIR, "README.md"))
        response = @client.get("/readme")
        assert_equal "200", response.code
        assert_equal readme.bytesize.to_s, response["content-length"], "send_file goes out with Content-Length"
        assert_nil response["transfer-encoding"], "send_file is not chunked"
        assert_equal readme, response.body.b
      end
    end

    def test_sessions_keep_a_counter_per_cookie
      diagnose do
        assert_equal 1, JSON.parse(@client.get("/counter").body)["count"]
        assert_equal 2, JSON.parse(@client.get("/counter").body)["count"]
        assert_equal 3, JSON.parse(@client.get("/counter").body)["count"]
        @client.forget_cookies
        assert_equal 1, JSON.parse(@client.get("/counter").body)["count"], "a new session starts again"
      end
    end

    def test_active_record_index
      diagnose do
        response = @client.get("/notes.json")
        assert_equal "200", response.code
        titles = JSON.parse(response.body).map { |note| note["title"] }
        assert_equal (1..10).map { |i| "Note #{i}" }, titles.first(10), "the seeded rows, in order"
        html = @client.get("/notes").body
        assert_match(%r{<li id="note-1">Note 1 <small>}, html)
      end
    end

    # The second event is sent only after the client, holding the first,
    # releases it: a buffered stream can never pass (it would get
    # released: false after the server's wait).
    def test_server_sent_events_arrive_as_they_are_written
      diagnose do
        token = SecureRandom.hex(16)
        csrf = @client.csrf_token("/", meta: true)
        stream = RawStream.new(@server.port, "/events/#{token}")
        begin
          assert_equal 200, stream.status
          assert_match %r{\Atext/event-stream}, stream.headers["content-type"]
          first = stream.next_event
          assert_includes first, "event: tick"
          assert_includes first, 'data: {"n":1}'
          assert_equal "204", @client.post_form("/events/#{token}/release", "authenticity_token" => csrf).code
          second = stream.next_event
          assert_includes second, 'data: {"n":2,"released":true}'
          assert_nil stream.next_event, "the stream ends"
        ensure
          stream.close
        end
      end
    end

    def test_action_cable_echo_over_a_websocket
      diagnose do
        cable = CableClient.new(@server.port)
        begin
          assert_equal({ "type" => "welcome" }, cable.next_message)
          assert_equal 101, cable.status
          identifier = JSON.generate(channel: "EchoChannel")
          cable.send_json(command: "subscribe", identifier: identifier)
          assert_equal({ "identifier" => identifier, "type" => "confirm_subscription" }, cable.next_message)
          %w[hello wörld].each do |text|
            cable.send_json(command: "message", identifier: identifier, data: JSON.generate(text: text))
            echo = cable.next_message
            assert_equal identifier, echo["identifier"]
            assert_equal text, echo.dig("message", "text")
          end
        ensure
          cable.close
        end
      end
    end

    def test_action_cable_refuses_a_foreign_origin
      diagnose do
        cable = CableClient.new(@server.port, origin: "http://evil.example")
        begin
          assert_raises(RuntimeError) { cable.next_message }
          assert_equal 404, cable.status, "the handshake is refused, not upgraded"
        ensure
          cable.close
        end
      end
    end
  end

  class ThreadedTest < Minitest::Test
    MODE = "threaded"
    ARGS = %w[-m threaded -w 2 -t 5].freeze
    include Checks
  end

  # kino.rb as it is: mode :cluster, 2 workers x 5 threads.
  class ClusterTest < Minitest::Test
    MODE = "cluster"
    ARGS = %w[-C kino.rb].freeze
    include Checks

    def test_requests_are_served_by_forked_workers
      diagnose do
        pids = Array.new(8) { JSON.parse(@client.get("/hello.json").body)["pid"] }
        refute_includes pids, @server.pid, "the master only supervises"
      end
    end
  end

  # script/ractor_probe.rb runs every attempt and gives a verdict with
  # its reasons (whichever way it goes: a later Rails or Ruby may change it).
  class RactorProbeTest < Minitest::Test
    def test_the_probe_gives_a_verdict_with_reasons
      Setup.database
      output, status = Open3.capture2e(Setup::ENV_VARS, RbConfig.ruby, "script/ractor_probe.rb",
                                       chdir: KinoServer::APP_DIR)
      assert status.success?, output
      attempts = output.lines.grep(/\A\d\. /)
      assert_equal 4, attempts.size, output
      attempts.each { |line| assert_match(/: (yes|no): \S/, line) }
      verdict = output.lines.last
      assert_match(/\Averdict: (yes|no), /, verdict)
      assert_equal attempts.any? { |line| line.include?(": yes: ") }, verdict.start_with?("verdict: yes"), output
    end
  end

  modes = ENV.fetch("KINO_MODES", "threaded,cluster").split(",")
  [ThreadedTest, ClusterTest].each do |test_class|
    Minitest::Runnable.runnables.delete(test_class) unless modes.include?(test_class::MODE)
  end
end
