# frozen_string_literal: true

require_relative "helper"

# Kino::Options.resolve: defaults, coercion and the first bad option named.
class PureOptionsTest < Minitest::Test
  def test_defaults_are_resolved_and_frozen
    options = Kino::Options.resolve({})
    assert_predicate options, :frozen?
    assert_equal Kino::Options::DEFAULTS.merge(mode: :auto), options
  end

  def test_mode_given_as_a_string_becomes_a_symbol
    assert_equal :ractor, Kino::Options.resolve(mode: "ractor")[:mode]
  end

  def test_unknown_and_invalid_options_are_named
    error = assert_raises(ArgumentError) { Kino::Options.resolve(prot: 80) }
    assert_match(/unknown option :prot/, error.message)
    {
      port: 70_000, workers: 0, threads: 1.5, io_threads: nil, mode: :fast, queue_timeout: 0,
      shutdown_timeout: -1, max_body_size: -1, bind: "", on_error: 42, pidfile: ""
    }.each do |name, value|
      error = assert_raises(ArgumentError, name.to_s) { Kino::Options.resolve(name => value) }
      assert_match(/\Ainvalid #{name}: #{Regexp.escape(value.inspect)} \(expected /, error.message)
    end
  end

  def test_pool_options
    options = Kino::Options.resolve(workers: 2, max_workers: 4, scale_down_after: 5, quarantine_timeout: 30,
                                    quarantine_max: 0)
    assert_equal [4, 5, 30, 0], options.values_at(:max_workers, :scale_down_after, :quarantine_timeout, :quarantine_max)
    assert_equal [nil, 30.0, nil, nil],
                 Kino::Options.resolve({}).values_at(:max_workers, :scale_down_after, :quarantine_timeout, :quarantine_max)
    [[:max_workers, 0], [:scale_down_after, 0], [:scale_down_after, nil], [:quarantine_timeout, -1],
     [:quarantine_timeout, 0], [:quarantine_max, -1], [:quarantine_max, 1.5]].each do |name, value|
      error = assert_raises(ArgumentError, name.to_s) { Kino::Options.resolve(name => value) }
      assert_match(/\Ainvalid #{name}: #{Regexp.escape(value.inspect)} \(expected /, error.message)
    end
    error = assert_raises(ArgumentError) { Kino::Options.resolve(workers: 4, max_workers: 2) }
    assert_equal "invalid max_workers: 2 (expected at least workers (4), or nil)", error.message
  end
end
