# frozen_string_literal: true

require_relative "helper"

# Kino's own rackup loader, used when the rack gem is not installed.
class BuilderTest < Minitest::Test
  class Tag
    def initialize(app, tag)
      @app = app
      @tag = tag
    end

    def call(env)
      status, headers, body = @app.call(env)
      [status, headers.merge("x-tag" => @tag), body]
    end
  end

  def env(path)
    { "PATH_INFO" => path, "SCRIPT_NAME" => "" }
  end

  def test_run_use_and_map
    app = Kino::Builder.parse(<<~RU)
      use BuilderTest::Tag, "outer"
      map "/admin" do
        run ->(env) { [200, {}, ["admin \#{env['SCRIPT_NAME']} \#{env['PATH_INFO']}"]] }
      end
      map "/admin/deep" do
        run ->(env) { [200, {}, ["deep \#{env['PATH_INFO']}"]] }
      end
      run ->(env) { [200, {}, ["root \#{env['PATH_INFO']}"]] }
    RU
    assert_equal ["root /x"], app.call(env("/x"))[2]
    assert_equal "outer", app.call(env("/x"))[1]["x-tag"]
    assert_equal ["admin /admin /users"], app.call(env("/admin/users"))[2]
    assert_equal ["admin /admin /"], app.call(env("/admin"))[2]
    assert_equal ["deep /z"], app.call(env("/admin/deep/z"))[2]
    assert_equal ["root /administrator"], app.call(env("/administrator"))[2]
  end

  def test_map_only_gives_404_elsewhere
    app = Kino::Builder.parse('map("/a") { run ->(_e) { [200, {}, ["a"]] } }')
    assert_equal 404, app.call(env("/b"))[0]
  end

  def test_warmup_and_errors
    warmed = nil
    app = Kino::Builder.new do
      run ->(_e) { [200, {}, ["w"]] }
      warmup { |a| warmed = a }
    end.to_app
    assert_same app, warmed
    assert_raises(Kino::Error) { Kino::Builder.parse("1 + 1") }
    assert_raises(Kino::Error) { Kino::Builder.load_file("/nonexistent/config.ru") }
  end
end
