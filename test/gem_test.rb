# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "tmpdir"

# THE SLOW ONE (it compiles the C extension; about 5-20 s): builds
# kino.gemspec, installs the gem into a throwaway GEM_HOME with nothing
# else in it (no rack, no other gem), and serves a page with the installed
# `kino`. KINO_SKIP_SLOW=1 skips it.
class GemTest < Minitest::Test
  include KinoProcess

  # `gem ARGS` for the Ruby running the tests (not whichever gem is in PATH).
  GEM = ["-e", <<~RUBY].freeze
    require "rubygems/gem_runner"
    begin
      Gem::GemRunner.new.run(ARGV.dup)
    rescue Gem::SystemExitException => e
      exit e.exit_code
    end
  RUBY

  # The gem's build is mkmf's, never the sanitizers': under make test
  # SANITIZE=1 the compiler runs without AddressSanitizer's preload.
  UNSANITIZED = { "LD_PRELOAD" => nil, "ASAN_OPTIONS" => nil, "UBSAN_OPTIONS" => nil }.freeze

  # `gem install` compiles ten C files one after the other: 5-20 s on a
  # quiet machine, 150 s seen at load 20 on 2 cores, hence 600 s.
  def run_gem(*args, dir:, env: {})
    out, err, status = run_command([RbConfig.ruby, *GEM, "--", *args], dir: dir, env: UNSANITIZED.merge(env),
                                                                        timeout: 600)
    assert status.success?, "gem #{args.join(' ')}:\n#{out}#{err}"
    out
  end

  def test_slow_gem_builds_installs_and_serves
    skip "KINO_SKIP_SLOW is set" if ENV["KINO_SKIP_SLOW"]

    Dir.mktmpdir do |tmp|
      package = File.join(tmp, "kino-#{Kino::VERSION}.gem")
      run_gem("build", "kino.gemspec", "-o", package, dir: ROOT)
      home = File.join(tmp, "gems")
      env = UNSANITIZED.merge("GEM_HOME" => home, "GEM_PATH" => home, "RUBYLIB" => nil, "RUBYOPT" => nil,
                              "BUNDLE_GEMFILE" => nil)
      run_gem("install", "--local", "--no-document", "--install-dir", home, package, dir: tmp, env: env)

      kino = File.join(home, "bin", "kino")
      out, err, status = run_command([RbConfig.ruby, kino, "-v"], dir: tmp, env: env)
      assert status.success?, err
      tls = Kino::Native::TLS ? "TLS: #{Kino::Native::TLS}" : "TLS: not available (built without OpenSSL)"
      assert_equal "kino #{Kino::VERSION} (#{tls})\n", out, "the gem's build has TLS when this checkout's has"

      File.write(File.join(tmp, "config.ru"), <<~RU)
        run ->(_) { [200, {}, [$LOADED_FEATURES.grep(%r{kino/kino\\.}).join(" ")]] }
      RU
      with_server([RbConfig.ruby, kino, "-p", "0", "-w", "1", "-t", "1", "-m", "threaded"], dir: tmp, env: env) do |port|
        status, body = http_get(port)
        assert_equal 200, status
        assert body.start_with?(File.join(home, "")), "the extension the gem built: #{body}"
      end
    end
  end
end
