# frozen_string_literal: true

require_relative "helper"

# Kino.shareable_app and Kino::Check on the Ruby running them: Ruby 4.0
# makes a |env| block shareable itself (Ractor.shareable_lambda); 3.x
# needs a definer block or a shareable self.
class PureShareableTest < Minitest::Test
  ENV_HASH = { "PATH_INFO" => "/" }.freeze
  GREETING = "hi".freeze

  def test_a_definer_block_gives_a_shareable_app_everywhere
    app = Kino.shareable_app { ->(env) { [200, {}, [GREETING, env["PATH_INFO"]]] } }
    assert Ractor.shareable?(app)
    assert_equal [200, {}, ["hi", "/"]], app.call(ENV_HASH)
    assert Kino::Check.report(app)[:shareable]
  end

  def test_an_env_block_is_shareable_on_ruby_4_and_explained_on_3
    if Ractor.respond_to?(:shareable_lambda)
      app = Kino.shareable_app { |env| [200, {}, [env["PATH_INFO"]]] }
      assert Ractor.shareable?(app)
      assert_equal [200, {}, ["/"]], app.call(ENV_HASH)
    else
      error = assert_raises(Kino::UnshareableAppError) { Kino.shareable_app { |env| [200, {}, [env.size.to_s]] } }
      assert_match(/Kino\.shareable_app \{ ->\(env\)/, error.message)
    end
  end

  def test_a_captured_mutable_value_is_refused_with_advice
    hits = []
    error = assert_raises(Kino::UnshareableAppError) { Kino.shareable_app { ->(_env) { [200, {}, [hits.size.to_s]] } } }
    assert_match(/Captured variables must hold shareable values/, error.message)
  end

  def test_check_accepts_shareable_proc_apps
    skip "Ractor.shareable_proc is Ruby 4.0's" unless Ractor.respond_to?(:shareable_proc)

    app = Ractor.shareable_proc { |env| [200, {}, [env["PATH_INFO"]]] }
    report = Kino::Check.report(app)
    assert report[:shareable]
    assert_empty report[:findings]
    out = StringIO.new
    assert Kino::Check.print_report(app, out)
    assert_match(/app is Ractor-shareable/, out.string)
  end

  def test_check_names_what_blocks_an_unshareable_app
    list = []
    app = ->(_env) { [200, {}, [list.size.to_s]] }
    report = Kino::Check.report(app)
    refute report[:shareable]
    refute_empty report[:findings]
    assert_equal report[:findings].first.to_s, Kino::Check.first_blocker(app)
    out = StringIO.new
    refute Kino::Check.print_report(app, out)
    assert_match(/app is NOT Ractor-shareable/, out.string)
  end
end
