# frozen_string_literal: true

require_relative "helper"

# One source of truth for defaults: Kino::Options::DEFAULTS is it, and the
# engine's own defaults (kino_options_init, what a C program gets) must
# agree with it for every option both have.
class OptionsTest < Minitest::Test
  def test_engine_defaults_match_options_defaults
    engine = Kino::Native.defaults
    shared = Kino::Options::DEFAULTS.keys & engine.keys
    assert_operator shared.size, :>=, 10, "the engine knows the options it is given"
    shared.each do |name|
      expected = Kino::Options::DEFAULTS[name]
      message = "default of #{name}: kino_options_init and Kino::Options::DEFAULTS disagree"
      expected.nil? ? assert_nil(engine[name], message) : assert_equal(expected, engine[name], message)
    end
  end

  def test_every_option_the_engine_takes_has_a_ruby_default
    native = Kino::Options.native(Kino::Options::DEFAULTS).keys
    missing = native - Kino::Native.defaults.keys
    assert_empty missing, "options passed to the engine that kino_options_init does not set"
    # listen: bind, resolved; shared_listener: mode :cluster
    assert_empty native - Kino::Options::DEFAULTS.keys - %i[listen shared_listener]
    refute Kino::Native.defaults[:shared_listener]
    assert Kino::Options.native(Kino::Options::DEFAULTS.merge(mode: :cluster))[:shared_listener]
  end
end
