# frozen_string_literal: true

require_relative "helper"
require "kino/sample_config"

# The kino.rb DSL (Kino::Configuration): one directive per option, values
# checked with Kino::Options' rules, errors naming file, line and
# directive, and the precedence kwargs > config file > defaults for every
# option, through Kino::Server.new(app, config_file:).
class ConfigurationTest < Minitest::Test
  include TempDir
  # A shareable app, so mode :ractor is accepted.
  module App
    def self.call(_env) = [200, {}, ["ok"]]
  end

  # A callable a config file can name (constants resolve as in any file).
  CALLABLE = Object.new.tap { |o| def o.call(*) = nil }

  FILE_HOOK = "->(*) {}"
  # Per option: [a value for the config file (Ruby source), the value it
  # gives, a different value passed as a keyword]. Every option of
  # Options::DEFAULTS must be here.
  KWARG_HOOK = ->(*) {}
  VALUES = {
    bind: ['"0.0.0.0"', "0.0.0.0", "::1"],
    port: ["4000", 4000, 5000],
    proxy_protocol: ["true", true, false],
    http2: ["false", false, true],
    control_bind: [%("127.0.0.1:9300"), "127.0.0.1:9300", "unix:///run/k.sock"],
    control_token: [%("abc"), "abc", "def"],
    workers: ["2", 2, 3],
    threads: ["4", 4, 5],
    mode: [":ractor", :ractor, :threaded],
    io_threads: ["2", 2, 3],
    queue_depth: ["10", 10, 20],
    queue_timeout: ["1.5", 1.5, 2.5],
    request_timeout: ["7", 7, 8],
    shutdown_timeout: ["0", 0, 3],
    max_body_size: ["1024", 1024, nil],
    header_timeout: ["3", 3, 4],
    keepalive_timeout: ["9", 9, 10],
    body_timeout: ["11", 11, 12],
    max_connections: ["100", 100, 200],
    tls: ['cert: "c.pem", key: "k.pem"', { cert: "c.pem", key: "k.pem" }, { cert: "d.pem", key: "e.pem", min_version: "1.3" }],
    body_buffer: ["65_536", 65_536, 0],
    pidfile: ['"a.pid"', "a.pid", "b.pid"],
    log_requests: ['"access.log"', "access.log", true],
    log_format: [":json", :json, :text],
    on_error: [FILE_HOOK, :from_file, KWARG_HOOK],
    after_boot: [FILE_HOOK, :from_file, KWARG_HOOK],
    on_worker_boot: [FILE_HOOK, :from_file, KWARG_HOOK],
    on_worker_exit: [FILE_HOOK, :from_file, KWARG_HOOK],
    before_fork: [FILE_HOOK, :from_file, KWARG_HOOK],
    preload: ["false", false, true],
    lanes: ["true", true, false],
    batch: ["4", 4, 8],
    max_workers: ["64", 64, 128],
    scale_down_after: ["5", 5, 6],
    quarantine_timeout: ["20", 20, 30],
    quarantine_max: ["3", 3, 0]
  }.freeze

  def write(source, name = "kino.rb")
    path = File.join(@dir, name)
    File.write(path, source)
    path
  end

  def load_source(source)
    Kino::Configuration.load(write(source))
  end

  def assert_config_error(source, *patterns)
    error = assert_raises(Kino::ConfigError) { load_source(source) }
    patterns.each { |pattern| assert_match(pattern, error.message) }
    error
  end

  def test_every_option_has_a_test_value
    assert_equal Kino::Options::DEFAULTS.keys.sort, VALUES.keys.sort
  end

  # kwargs > config file > defaults, for every option.
  def test_precedence_for_every_option
    VALUES.each do |name, (source, file_value, kwarg)|
      base = name == :mode ? {} : { mode: :threaded } # hooks would make :auto warn
      path = write("#{name} #{source}\n")

      default = Kino::Server.new(App, **base).options[name]
      assert_equal Kino::Options::DEFAULTS[name].inspect, default.inspect, "#{name}: default"

      from_file = Kino::Server.new(App, config_file: path, **base).options[name]
      if file_value == :from_file
        assert_kind_of Proc, from_file, "#{name}: from the file"
        assert_equal path, from_file.source_location.first, "#{name}: the file's hook"
      else
        assert_equal file_value, from_file, "#{name}: config file over the default"
      end

      from_kwarg = Kino::Server.new(App, config_file: path, **base, name => kwarg).options[name]
      if kwarg.nil?
        assert_nil from_kwarg, "#{name}: an explicit nil keyword wins too"
      else
        assert_equal kwarg, from_kwarg, "#{name}: keyword over the config file"
      end
    end
  end

  def test_the_file_sets_only_what_it_names
    config = load_source("port 3000\nworkers 2\n")
    assert_equal({ port: 3000, workers: 2 }, config.server_options)
    assert_predicate config.server_options, :frozen?
    assert_nil config.environment
    assert_nil config.rackup
  end

  def test_environment_and_rackup_are_not_server_options
    config = load_source(%(environment :production\nrackup "app.ru"\n))
    assert_equal "production", config.environment
    assert_equal "app.ru", config.rackup
    assert_empty config.server_options
  end

  def test_directives_follow_options_defaults
    assert_equal Kino::Options::DEFAULTS.keys + %i[environment rackup], Kino::Directives.names
  end

  def test_every_directive_is_documented_with_a_valid_example
    assert_equal Kino::Directives.names.sort, Kino::Directives::DOCS.keys.sort, "document each new option in directives.rb"
    Kino::Directives.names.each do |name|
      doc = Kino::Directives.doc(name)
      refute_empty doc.summary, name
      refute_empty doc.why, name
      assert_includes Kino::Directives::GROUPS, doc.group, name
      config = Kino::Configuration.new.evaluate(doc.example, "example.rb")
      assert(config.server_options.key?(name) || config.public_send(name), "#{name}: its example sets it")
    end
  end

  def test_defaults_shown_match_the_options
    Kino::Options::DEFAULTS.each do |name, value|
      next if value.nil? || name == :port # nil: described in words; port: 9292 under kino

      assert_includes Kino::Directives.default_text(name), value.inspect, name
    end
  end

  def test_unknown_directive_names_file_line_and_directive
    error = assert_config_error("port 3000\n\nplugin :tmp_restart\n", /kino\.rb:3:/, /unknown directive `plugin`/)
    assert_match(/known: bind, port/, error.message)
    assert_config_error("workrs 2\n", /kino\.rb:1:/, /`workrs`/, /did you mean `workers`/)
  end

  def test_bad_values_name_file_line_and_directive
    assert_config_error("port 3000\nport \"http\"\n", /kino\.rb:2:/, /invalid port: "http"/)
    assert_config_error("workers 0\n", /kino\.rb:1:/, /invalid workers: 0/)
    assert_config_error("mode :fast\n", /kino\.rb:1:/, /invalid mode/)
    assert_config_error("queue_timeout -1\n", /kino\.rb:1:/, /invalid queue_timeout/)
    assert_config_error("on_error 42\n", /kino\.rb:1:/, /invalid on_error/)
    assert_config_error("environment 42\n", /kino\.rb:1:/, /invalid environment/)
    assert_config_error("rackup nil\n", /kino\.rb:1:/, /invalid rackup/)
  end

  def test_wrong_calls_name_the_directive
    assert_config_error("port 1, 2\n", /kino\.rb:1:/, /port takes one value \(got 2\)/)
    assert_config_error("port\n", /port takes one value \(got 0\)/)
    assert_config_error("workers(2) { }\n", /workers takes no block/)
    assert_config_error("on_error\n", /on_error takes a block or one callable/)
    assert_config_error("on_error(->(*) {}) { }\n", /on_error takes a block or a callable, not both/)
  end

  def test_ruby_errors_name_the_line
    assert_config_error("port 3000\nworkers Nope::Missing\n", /kino\.rb:2:/, /Nope/, /NameError/)
    assert_config_error("port 3000\nraise \"boom\"\n", /kino\.rb:2: boom/)
    assert_config_error("port 3000\nif true\n", /kino\.rb/, /syntax error|unexpected|expected/i)
  end

  def test_a_hook_takes_a_block_or_a_callable_once
    config = load_source("after_boot ConfigurationTest::CALLABLE\non_worker_boot { |worker| worker }\n")
    assert_same CALLABLE, config.server_options[:after_boot]
    assert_equal 7, config.server_options[:on_worker_boot].call(7)
    assert_config_error("on_error { }\n\non_error { }\n", /kino\.rb:3: on_error is already set at .*kino\.rb:1/)
  end

  def test_ruby_in_the_file_works_like_puma_configs
    ENV["KINO_TEST_PORT"] = "4567"
    config = load_source(<<~RUBY)
      threads_count = Integer(ENV.fetch("KINO_TEST_THREADS", 5))
      threads threads_count, threads_count
      port ENV.fetch("KINO_TEST_PORT", 3000)
      workers File.basename("2")
      request_timeout "2.5"
      mode "threaded"
      max_body_size 10 * 1024 * 1024
    RUBY
    assert_equal({ threads: 5, port: 4567, workers: 2, request_timeout: 2.5, mode: :threaded,
                   max_body_size: 10 * 1024 * 1024 }, config.server_options)
  ensure
    ENV.delete("KINO_TEST_PORT")
  end

  def test_threads_min_max_uses_max
    assert_equal 16, load_source("threads 0, 16\n").server_options[:threads]
  end

  def test_the_file_cannot_reach_kino_internals
    %w[server_options directive evaluate unknown].each do |name|
      assert_config_error("#{name}\n", /unknown directive `#{name}`/)
    end
    hook = load_source("on_error { |_e, _env| report_somewhere }\n").server_options[:on_error]
    assert_raises(Kino::ConfigError) { hook.call(nil, {}) } # a typo in a hook fails when it runs
  end

  def test_missing_file
    error = assert_raises(Kino::ConfigError) { Kino::Server.new(App, config_file: File.join(@dir, "nope.rb")) }
    assert_match(/config file not found: .*nope\.rb/, error.message)
  end

  def test_default_path_prefers_kino_rb_then_config_kino_rb
    Dir.chdir(@dir) do
      assert_nil Kino::Configuration.default_path
      FileUtils.mkdir_p("config")
      File.write("config/kino.rb", "")
      assert_equal "config/kino.rb", Kino::Configuration.default_path
      File.write("kino.rb", "")
      assert_equal "kino.rb", Kino::Configuration.default_path
    end
  end

  # The sample `kino --init` writes: all comments, so it changes nothing.
  def test_the_untouched_sample_yields_exactly_the_defaults
    text = Kino::SampleConfig.text
    text.each_line { |line| assert_match(/\A#/, line, "every line is a comment") }
    config = load_source(text)
    assert_empty config.server_options
    assert_nil config.environment
    assert_nil config.rackup
    path = write(text, "sample.rb")
    assert_equal Kino::Options.resolve({}), Kino::Server.new(App, config_file: path).options
  end

  def test_the_sample_documents_every_directive_and_rails
    text = Kino::SampleConfig.text
    Kino::Directives.names.each do |name|
      doc = Kino::Directives.doc(name)
      assert_includes text, "# #{name}: ", name
      assert_includes text, "Default: #{Kino::Directives.default_text(name)}.", name
      assert_includes text, "# #{doc.example.lines.first}", name
    end
    rails = text[/^# ## Rails.*/m]
    refute_nil rails
    ["mode :cluster", ":threaded", "threads", "pool", "workers x threads", 'environment "production"', "eager_load",
     "preload"].each { |phrase| assert_includes rails, phrase }
  end

  # Uncommenting every directive line of the sample gives a valid file.
  def test_the_uncommented_sample_is_valid
    examples = Kino::Directives.names.map { |name| Kino::Directives.doc(name).example }.join("\n")
    config = Kino::Configuration.new.evaluate(examples, "all.rb")
    assert_equal Kino::Options::DEFAULTS.keys.sort, config.server_options.keys.sort
    Kino::Server.new(App, **config.server_options.merge(mode: :threaded))
  end
end
