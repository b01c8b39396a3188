# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "tmpdir"
require "rbconfig"

# Kino.serve in a child process, as `ruby -rkino -e 'Kino.serve'` runs it:
# the built-in page without a config.ru, the directory's config.ru with
# one, and a graceful stop on TERM and INT.
class ServeTest < Minitest::Test
  include KinoTest
  include KinoProcess

  LIB = File.expand_path("../lib", __dir__)

  # Start `ruby -rkino -e CODE` in dir; yield the port from its banner.
  def child(dir, code = "Kino.serve(port: 0, workers: 1, threads: 1)", signal: "TERM")
    out_r, out_w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, "-I", LIB, "-rkino", "-e", code, chdir: dir, out: out_w, err: out_w)
    out_w.close
    banner = +""
    Timeout.timeout(10) { banner << out_r.readpartial(4096) until banner.include?("Ctrl-C") }
    banner.force_encoding(Encoding::UTF_8)
    port = banner[%r{listening: http://127\.0\.0\.1:(\d+)}, 1].to_i
    yield port, banner
    Process.kill(signal, pid)
    _, status = Timeout.timeout(10) { Process.wait2(pid) }
    assert status.success?, "exit status #{status.inspect}: #{out_r.read}"
  ensure
    kill_process(pid) unless status
  end

  def test_built_in_page_without_config_ru
    Dir.mktmpdir do |dir|
      child(dir, signal: "INT") do |port, banner|
        assert_match(/Kino #{Regexp.escape(Kino::VERSION)}/, banner)
        assert_match(/mode: ractor, 1 worker × 1 thread/, banner) # the built-in page is shareable
        assert_match(/pid: \d+/, banner)
        response = get(port, "/hello?x=1")
        assert_equal 200, response.status
        assert_includes response.body, "Kino #{Kino::VERSION}"
        assert_includes response.body, RUBY_VERSION
        assert_includes response.body, "<b>ractor</b>"
        assert_includes response.body, "GET /hello?x=1 HTTP/1.1"
      end
    end
  end

  def test_serves_the_directory_config_ru
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "config.ru"), <<~RU)
        map "/api" do
          run ->(env) { [200, { "content-type" => "text/plain" }, ["api: \#{env['PATH_INFO']}"]] }
        end
        run ->(env) { [200, { "content-type" => "text/plain" }, ["root"]] }
      RU
      child(dir) do |port|
        assert_equal "root", get(port, "/").body
        assert_equal "api: /users", get(port, "/api/users").body
      end
    end
  end

  def test_default_port_is_9292
    seen = []
    original = Kino::Server.method(:run)
    Kino::Server.define_singleton_method(:run) { |_app, **options| seen << options[:port] }
    Kino.serve(->(_env) {})
    Kino.serve(->(_env) {}, port: 1234)
    assert_equal [9292, 1234], seen
  ensure
    Kino::Server.define_singleton_method(:run, original)
  end
end
