# frozen_string_literal: true

require_relative "helper"

# The CLI's argument handling: flags are coerced and validated like config
# file values, and every mistake is one line on stderr and exit status 2.
class PureCLITest < Minitest::Test
  def run_cli(*argv)
    out = StringIO.new
    err = StringIO.new
    status = Kino::CLI.start(argv, out: out, err: err)
    [status, out.string, err.string]
  end

  def test_version_and_help
    status, out, err = run_cli("-v")
    assert_equal [0, ""], [status, err]
    assert_match(/\Akino #{Regexp.escape(Kino::VERSION)}( \(.*\))?\n\z/, out) # (TLS: ...) when built
    status, out, = run_cli("--help")
    assert_equal 0, status
    assert_includes out, "Usage: kino [options] [rackup file]"
    Kino::Directives.names.each { |name| assert_match(/^  #{name} /, out) }
  end

  def test_flags_are_coerced_like_directives
    cli = Kino::CLI.new(%w[-p 8080 -w 3 -t 2 -m threaded -b ::1 app.ru]).parse!
    flags = cli.instance_variable_get(:@flags)
    assert_equal({ port: 8080, workers: 3, threads: 2, mode: :threaded, bind: "::1" }, flags)
  end

  def test_bad_command_lines_exit_2_with_one_line
    [
      [%w[-p eighty], /invalid port/],
      [%w[-w 0], /invalid workers: 0/],
      [%w[--mode fast], /invalid mode/],
      [%w[--frobnicate], /invalid option: --frobnicate/],
      [%w[a.ru b.ru], /one rackup file at most/],
      [%w[-e] + [""], /invalid environment/]
    ].each do |argv, message|
      status, out, err = run_cli(*argv)
      assert_equal 2, status, argv.inspect
      assert_empty out
      assert_match message, err
      assert_equal 1, err.lines.size, err
      assert_match(/\Akino: .*\(see kino --help\)\n\z/, err)
    end
  end
end
