# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"

# Real frameworks under plain `kino` (mode :auto): Sinatra (classic and
# modular) and Roda (plain, frozen, and frozen and made shareable) keep
# class-level state or define_method'd routes that a worker ractor cannot
# touch, although a class passes Ractor.shareable?. Kino::Check sees it,
# so :auto serves them in :threaded mode, and every request works.
class FrameworksTest < Minitest::Test
  include TempDir
  include KinoProcess

  RODA_APP = <<~RUBY
    require "roda"
    class App < Roda
      route { |r| r.root { "roda" } }
    end
  RUBY

  APPS = {
    "sinatra classic" => [%(require "sinatra"\nset :logging, false\nget("/") { "sinatra classic" }\nrun Sinatra::Application\n),
                          "sinatra classic"],
    "sinatra modular" => [%(require "sinatra/base"\nclass MyApp < Sinatra::Base\n  get("/") { "sinatra modular" }\nend\nrun MyApp\n),
                          "sinatra modular"],
    "roda" => ["#{RODA_APP}run App.app\n", "roda"],
    "frozen roda" => ["#{RODA_APP}run App.freeze.app\n", "roda"],
    "frozen roda made shareable" => ["#{RODA_APP}run Ractor.make_shareable(App.freeze.app)\n", "roda"]
  }.freeze

  APPS.each do |name, (source, body)|
    define_method("test_plain_kino_serves_#{name.tr(' ', '_')}") do
      File.write(File.join(@dir, "config.ru"), source)
      output = with_server([RbConfig.ruby, KINO, "-p", "0", "-w", "2"], dir: @dir) do |port, banner|
        assert_match(/mode: threaded/, banner)
        assert_match(/kino\[\d+\] main: the app is not Ractor-shareable \(app/, banner, "one line naming a blocker")
        3.times { assert_equal [200, body], http_get(port, "/") }
      end
      refute_match(/500 GET/, output)
    end
  end

  def test_check_names_define_method_routes_of_a_frozen_roda_app
    File.write(File.join(@dir, "config.ru"), "#{RODA_APP}run Ractor.make_shareable(App.freeze.app)\n")
    out, _, status = kino("--check", dir: @dir)
    assert_equal 1, status.exitstatus
    assert_match(/app#_roda_main_route — defined with define_method and a block/, out)
  end

  # An app Check cannot see through (it reads an unshareable constant):
  # forced into :ractor mode, its Ractor::IsolationError is explained once
  # per worker, with a pointer to kino --check; each request still gets 500.
  def test_an_isolation_error_is_explained_once
    File.write(File.join(@dir, "config.ru"), <<~RUBY)
      SETTINGS = { greeting: +"hi" }
      module Greeter
        def self.call(_env) = [200, {}, [SETTINGS[:greeting]]]
      end
      run Greeter
    RUBY
    output = with_server([RbConfig.ruby, KINO, "-p", "0", "-w", "1", "-m", "ractor"], dir: @dir) do |port|
      3.times { assert_equal 500, http_get(port, "/").first }
    end
    assert_equal 3, output.scan(/^kino\[\d+\] worker-0: 500 GET \/ · Ractor::IsolationError/).size
    assert_equal 1, output.scan(/Run `kino --check`/).size, output
  end

  # What `rails server -u kino` serves: no "not shareable" warning, one
  # line of information at most. (make test-rails runs a real Rails app.)
  def test_a_rails_app_gets_one_line_of_information_and_no_warning
    File.write(File.join(@dir, "config.ru"), <<~RUBY)
      module Rails
        def self.application = APP
      end
      APP = ->(_env) { [200, {}, ["rails"]] }
      run Rails.application
    RUBY
    out_r, out_w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, KINO, "-p", "0", "-w", "1", chdir: @dir, out: out_w, err: out_w)
    out_w.close
    banner = read_until(out_r, "Ctrl-C", 20)
    Process.kill("TERM", pid)
    Process.wait(pid)
    refute_match(/shareable/i, banner)
    assert_equal ["kino[#{pid}] main: serving this Rails app in mode :threaded (mode :auto; say mode :cluster to use every core)"],
                 banner.lines.grep(/\Akino\[\d+\] main: serving/).map(&:chomp)
  ensure
    out_r&.close
  end
end
