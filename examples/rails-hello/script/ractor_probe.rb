# frozen_string_literal: true

# Can this Rails app be made Ractor-shareable and serve a request from a
# worker ractor (Kino's mode :ractor)? Boots the app as Kino would, then
# tries each way in, each in a forked child so a half-frozen app never
# leaks into the next attempt, and prints what happened:
#
#   bundle exec ruby script/ractor_probe.rb
#
# Exit status 0 when every attempt ran (whatever the verdict), 1 when the
# probe itself could not run. The last line is the verdict.
ENV["RAILS_ENV"] ||= "production"
require_relative "../config/environment"
require "kino"
require "stringio"
Warning[:experimental] = false # Ractor's "experimental" warning, once per attempt

module RactorProbe
  PATH = "/hello"

  # A GET env for PATH, built from plain strings: shareable once frozen.
  def self.env
    { "REQUEST_METHOD" => "GET", "PATH_INFO" => PATH, "SCRIPT_NAME" => "", "QUERY_STRING" => "",
      "SERVER_NAME" => "127.0.0.1", "SERVER_PORT" => "3000", "SERVER_PROTOCOL" => "HTTP/1.1",
      "HTTP_HOST" => "127.0.0.1:3000", "REMOTE_ADDR" => "127.0.0.1", "rack.url_scheme" => "http" }
  end

  # Runs the block in a forked child; returns its one-line result.
  def self.attempt(title)
    reader, writer = IO.pipe
    pid = fork do
      reader.close
      result = begin
        yield
      rescue Exception => e # rubocop:disable Lint/RescueException -- report every failure
        e = e.cause if e.is_a?(Ractor::RemoteError) && e.cause # what the worker ractor raised
        "no: #{e.class}: #{e.message.lines.first&.strip}"
      end
      writer.write(result.to_s)
      writer.close
      exit!(0)
    end
    writer.close
    result = reader.read
    Process.wait(pid)
    result = "no: the child died (#{$?.inspect})" if result.empty?
    puts "#{title}: #{result}"
    result.start_with?("yes")
  end

  # A worker ractor calls the app and returns [status, body].
  def self.serve_in_ractor(app)
    request = Ractor.make_shareable(env)
    worker = Ractor.new(app, request) do |shared_app, shared_env|
      rack_env = shared_env.dup
      rack_env["rack.input"] = StringIO.new(+"")
      rack_env["rack.errors"] = $stderr
      code, _headers, body = shared_app.call(rack_env)
      body.close if body.respond_to?(:close)
      code
    end
    status = worker.take
    status == 200 ? "yes: a worker ractor served GET #{PATH} (200)" : "no: the worker ractor answered #{status}"
  end

  def self.run
    app = Rails.application
    puts "ruby #{RUBY_VERSION}, rails #{Rails.version}, kino #{Kino::VERSION}, app #{app.class}"
    puts "Ractor.shareable?(Rails.application): #{Ractor.shareable?(app)}"

    report = Kino::Check.report(app)
    puts "kino --check: #{report[:shareable] ? 'shareable' : 'NOT shareable'} (#{report[:findings].size} findings)"
    report[:findings].first(5).each { |finding| puts "  - #{finding}" }

    results = []
    results << attempt("1. a worker ractor reaches Rails.application itself") do
      Ractor.new { Rails.application.call(RactorProbe.env)[0] }.take == 200 ? "yes: served" : "no: not 200"
    end
    results << attempt("2. the app passed to a worker ractor as it is (Ractor.new copies it)") do
      serve_in_ractor(app)
    end
    results << attempt("3. Ractor.make_shareable(Rails.application), then serve from a worker ractor") do
      Ractor.make_shareable(app)
      serve_in_ractor(app)
    end
    results << attempt("4. Kino::Server.new(app, mode: :ractor)") do
      server = Kino::Server.new(app, mode: :ractor, port: 0, workers: 1).start
      server.shutdown(timeout: 1)
      "yes: Kino started the app in mode :ractor"
    end

    verdict = if results.any?
                "verdict: yes, one way above served from a worker ractor"
              else
                "verdict: no, this Rails app cannot serve from a worker ractor (reasons above); " \
                  "run it in mode :threaded or :cluster"
              end
    puts verdict
  end
end

RactorProbe.run
