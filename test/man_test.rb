# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "kino/cli"

# man/kino.1 against the code: every CLI flag and every config directive
# (with its default) is documented there and in `kino --help`, and groff
# formats the page without a single warning.
class ManTest < Minitest::Test
  include KinoProcess

  MAN = File.join(ROOT, "man", "kino.1")

  # +roff+ as plain text: font escapes and \- undone, macro names (and
  # the quotes of their arguments) dropped.
  def plain(roff)
    roff = roff.gsub(/\\f[BIRP]/, "").gsub("\\-", "-").gsub("\\(mu", "x")
    roff.lines.map { |line| line.start_with?(".") ? line.sub(/\A\.[A-Z]+ ?/, "").delete('"') : line }.join
  end

  # The tagged paragraphs (.TP) of the page: [tag, text] pairs, plain.
  def entries
    @entries ||= File.read(MAN).split(/^\.TP\n/).drop(1).map do |chunk|
      tag, *text = plain(chunk).lines
      [tag.split.join(" "), text.join.split.join(" ")]
    end
  end

  # The help text with runs of white space as one space.
  def help_text
    @help_text ||= kino("--help", dir: ROOT).first.split.join(" ")
  end

  def test_every_flag_is_in_the_manual_and_the_help
    Kino::CLI::FLAGS.each do |flag|
      names = [flag.short, flag.long].compact
      pattern = /\A#{names.map { |n| Regexp.escape(n) }.join('\\b.*')}\b/
      assert entries.any? { |tag, _| tag.match?(pattern) }, "#{names.join(', ')} has an entry in man/kino.1"
      assert_includes help_text, names.join(", ")
    end
  end

  def test_every_directive_is_in_the_manual_with_its_default_and_in_the_help
    Kino::Directives.names.each do |name|
      default = "Default: #{Kino::Directives.default_text(name)}."
      _, text = entries.find { |tag, _| tag.split.first == name.to_s }
      refute_nil text, "#{name} has an entry in man/kino.1"
      assert_includes text, default, "#{name}'s entry in man/kino.1"
      assert_includes help_text, " #{name} #{Kino::Directives.doc(name).summary}"
      assert_includes help_text, "(default: #{Kino::Directives.default_text(name)})"
    end
  end

  def test_sections_version_and_exit_statuses
    roff = File.read(MAN)
    ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "CONFIGURATION", "MODES", "SIGNALS", '"EXIT STATUS"',
     "FILES", "ENVIRONMENT", "EXAMPLES", '"SEE ALSO"'].each { |section| assert_match(/^\.SH #{section}$/, roff) }
    assert_match(/^\.TH KINO 1 "[\d-]+" "Kino #{Regexp.escape(Kino::VERSION)}"/, roff)
    %w[0 1 2].each { |status| assert_match(/^\.B #{status}$/, roff) }
    %w[INT TERM USR1 RACK_ENV kino.rb config/kino.rb config.ru pidfile :auto :ractor :threaded].each do |word|
      assert_includes plain(roff), word
    end
  end

  # groff and man are not ours: under `make test SANITIZE=1` they must not
  # inherit the AddressSanitizer preload meant for Ruby.
  NO_PRELOAD = { "LD_PRELOAD" => nil }.freeze

  def test_groff_formats_it_without_warnings
    skip "groff is not installed" unless system("command -v groff >/dev/null 2>&1")

    out, err, status = run_command(%W[groff -ww -man -Tutf8 #{MAN}], env: NO_PRELOAD)
    assert status.success?, err
    assert_empty err, "groff warnings"
    assert_includes out, "kino"
  end

  def test_man_renders_it
    skip "man is not installed" unless system("command -v man >/dev/null 2>&1")

    out, err, status = run_command(%W[man -l #{MAN}],
                                   env: NO_PRELOAD.merge("MANPAGER" => "cat", "PAGER" => "cat", "MANWIDTH" => "80"))
    assert status.success?, err
    assert_match(/kino - a Rack 3 web server/, out.gsub(/.\x08/, ""))
  end
end
