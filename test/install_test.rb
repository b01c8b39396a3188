# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "tmpdir"

# `make install PREFIX=...`: the library, the extension, a kino that runs
# from anywhere and the manual where `man kino` finds it; `make uninstall`
# takes them away again.
class InstallTest < Minitest::Test
  include KinoProcess

  # make's own variables would leak an outer make's flags into this one.
  MAKE_ENV = { "MAKEFLAGS" => nil, "MFLAGS" => nil, "MAKELEVEL" => nil }.freeze

  def make(*targets, prefix)
    out, err, status = run_command(["make", "-s", *targets, "PREFIX=#{prefix}", "RUBY=#{RbConfig.ruby}"],
                                   dir: ROOT, env: MAKE_ENV, timeout: 120)
    assert status.success?, "make #{targets.join(' ')}:\n#{out}#{err}"
  end

  def test_install_then_uninstall
    Dir.mktmpdir do |tmp|
      prefix = File.join(tmp, "prefix")
      make("install", prefix)
      kino = File.join(prefix, "bin", "kino")
      assert File.executable?(kino)
      assert File.file?(File.join(prefix, "share", "man", "man1", "kino.1"))

      elsewhere = File.join(tmp, "app")
      Dir.mkdir(elsewhere)
      out, err, status = run_command([kino, "-v"], dir: elsewhere)
      assert status.success?, err
      assert_match(/\Akino #{Regexp.escape(Kino::VERSION)} \(TLS: /, out)

      # It serves with the installed library and extension, not this checkout's.
      File.write(File.join(elsewhere, "config.ru"),
                 %(run ->(_) { [200, {}, [$LOADED_FEATURES.grep(/kino\\/kino\\./).join]] }\n))
      with_server([kino, "-p", "0", "-w", "1", "-t", "1", "-m", "threaded"], dir: elsewhere) do |port|
        status, body = http_get(port)
        assert_equal 200, status
        assert body.start_with?(File.join(prefix, "lib", "kino", "lib", "kino", "kino.")), body
      end

      if system("command -v man >/dev/null 2>&1")
        out, err, status = run_command(%w[man -w kino], env: { "MANPATH" => File.join(prefix, "share", "man") })
        assert status.success?, err
        assert_equal File.join(prefix, "share", "man", "man1", "kino.1"), out.strip
      end

      make("uninstall", prefix)
      assert_empty Dir.glob("#{prefix}/**/*").select { |path| File.file?(path) }
    end
  end
end
