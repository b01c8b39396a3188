# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "kino/cli"

# bin/kino: in child processes as people run it (flags, errors and their
# exit statuses, --init, --check, serving with a config file), and the
# precedence of flags over the config file for every flag, in process.
class CLITest < Minitest::Test
  include TempDir
  include KinoProcess

  ENV_APP = <<~RU
    run ->(env) { [200, { "content-type" => "text/plain" }, ["env=\#{ENV['RACK_ENV']}"]] }
  RU

  def write(name, text)
    path = File.join(@dir, name)
    FileUtils.mkdir_p(File.dirname(path))
    File.write(path, text)
    path
  end

  # The CLI's plan for +argv+ run in the test directory (nothing served).
  def plan(*argv)
    Dir.chdir(@dir) { Kino::CLI.new(argv).parse!.plan }
  end

  # A usage error: status 2, one line on stderr naming the problem, a hint.
  def assert_usage_error(pattern, *args)
    out, err, status = kino(*args, dir: @dir)
    assert_equal 2, status.exitstatus, "stderr: #{err}"
    assert_empty out
    assert_equal 1, err.lines.size, "one line: #{err}"
    assert_match(pattern, err)
    assert_match(/see kino --help/, err)
  end

  # --- answering without serving ------------------------------------------

  def test_help_lists_flags_and_directives_without_loading_the_extension
    probe = "at_exit { warn 'LOADED ' + $LOADED_FEATURES.grep(%r{kino/(kino\\.|server)}).join(' ') }; " \
            "ARGV.replace(%w[--help]); load #{KINO.dump}"
    out, err, status = run_command([RbConfig.ruby, "-e", probe], dir: @dir)
    assert status.success?, err
    assert_equal "LOADED \n", err, "-h must not load the extension or the server"
    assert_match(/\AUsage: kino \[options\] \[rackup file\]/, out)
    Kino::CLI::FLAGS.each do |flag|
      assert_includes out, flag.long
      assert_includes out, "#{flag.short}, #{flag.long}" if flag.short
    end
    Kino::Directives.names.each { |name| assert_match(/^  #{name} /, out) }
  end

  def test_version
    out, err, status = kino("-v", dir: @dir)
    assert status.success?, err
    tls = Kino::Native::TLS ? "TLS: #{Kino::Native::TLS}" : "TLS: not available (built without OpenSSL)"
    assert_equal "kino #{Kino::VERSION} (#{tls})\n", out
    assert_equal "kino #{Kino::VERSION} (#{tls})\n", kino("--version", dir: @dir).first
  end

  def test_usage_errors_exit_2_with_one_line
    assert_usage_error(/invalid option: --bogus/, "--bogus")
    assert_usage_error(/missing argument: -p/, "-p")
    assert_usage_error(/invalid port: "http"/, "-p", "http")
    assert_usage_error(/invalid port: 70000/, "--port", "70000")
    assert_usage_error(/invalid workers: 0/, "-w", "0")
    assert_usage_error(/invalid threads: "many"/, "-t", "many")
    assert_usage_error(/invalid mode: :fast/, "-m", "fast")
    assert_usage_error(/invalid bind: ""/, "-b", "")
    assert_usage_error(/rackup file not found: config\.ru/)
    assert_usage_error(/rackup file not found: app\.ru/, "app.ru")
    assert_usage_error(/one rackup file at most/, "a.ru", "b.ru")
    assert_usage_error(/config file not found: nope\.rb/, "-C", "nope.rb")
  end

  def test_config_file_errors_exit_2_naming_file_line_and_directive
    write("config.ru", ENV_APP)
    write("kino.rb", "port 0\nworkers 1\nplugin :tmp_restart\n")
    assert_usage_error(/kino\.rb:3: unknown directive `plugin`/)
    write("kino.rb", "port 0\n\nworkers \"x\"\n")
    assert_usage_error(/kino\.rb:3: invalid workers: "x"/)
    write("other.rb", "threads 0\n")
    assert_usage_error(/other\.rb:1: invalid threads: 0/, "-C", "other.rb")
  end

  # --- --init ----------------------------------------------------------------

  def test_init_writes_the_sample_and_never_overwrites
    out, err, status = kino("--init", dir: @dir)
    assert status.success?, err
    assert_match(/wrote kino\.rb/, out)
    sample = File.read(File.join(@dir, "kino.rb"))
    require "kino/sample_config"
    assert_equal Kino::SampleConfig.text, sample
    assert_usage_error(/kino\.rb already exists; not overwriting it/, "--init")
    assert_equal sample, File.read(File.join(@dir, "kino.rb"))

    _, err, status = kino("--init", "config/kino.rb", dir: @dir)
    assert status.success?, err
    assert_equal sample, File.read(File.join(@dir, "config/kino.rb"))
  end

  def test_the_written_sample_changes_nothing
    kino("--init", dir: @dir)
    result = plan
    assert_equal({ port: 9292 }, result[:options])
    assert_equal "kino.rb", result[:config]
    assert_equal "config.ru", result[:rackup]
    assert_nil result[:environment]
  end

  # --- --check ----------------------------------------------------------------

  def test_check_exit_status_follows_the_report
    write("config.ru", <<~RU)
      module Shareable
        def self.call(_env) = [200, {}, ["ok"]]
      end
      run Shareable
    RU
    out, err, status = kino("--check", dir: @dir)
    assert_equal 0, status.exitstatus, err
    assert_match(/app is Ractor-shareable/, out)

    write("closure.ru", "cache = {}\nrun ->(env) { cache[env['PATH_INFO']] ||= [200, {}, ['ok']] }\n")
    out, err, status = kino("--check", "closure.ru", dir: @dir)
    assert_equal 1, status.exitstatus, err
    assert_match(/NOT Ractor-shareable/, out)
    assert_match(/cache/, out)
  end

  # --- serving -----------------------------------------------------------------

  def test_serves_with_the_config_file_and_flags_over_it
    write("config.ru", ENV_APP)
    write("kino.rb", "port 0\nworkers 3\nthreads 4\nmode :threaded\nenvironment \"staging\"\n")
    with_server([RbConfig.ruby, KINO, "-w", "1"], dir: @dir, env: { "RACK_ENV" => nil }) do |port, banner|
      assert_match(/Kino #{Regexp.escape(Kino::VERSION)}/, banner)
      assert_match(/mode: threaded, 1 worker × 4 threads/, banner) # -w over the file, threads from it
      assert_match(/pid: \d+/, banner)
      assert_match(/Ctrl-C to stop/, banner)
      assert_equal [200, "env=staging"], http_get(port)
    end
  end

  def test_environment_never_replaces_a_set_rack_env
    write("config.ru", ENV_APP)
    cmd = [RbConfig.ruby, KINO, "-p", "0", "-w", "1", "-t", "1", "-m", "threaded", "-e", "production"]
    with_server(cmd, dir: @dir, env: { "RACK_ENV" => "test" }) do |port|
      assert_equal "env=test", http_get(port).last
    end
  end

  def test_rackup_precedence_and_int_stops_gracefully
    write("config.ru", %(run ->(_) { [200, {}, ["config.ru"]] }\n))
    write("other.ru", %(run ->(_) { [200, {}, ["other.ru"]] }\n))
    write("third.ru", %(run ->(_) { [200, {}, ["third.ru"]] }\n))
    write("config/kino.rb", %(rackup "other.ru"\nport 0\nworkers 1\nmode :threaded\n))
    with_server([RbConfig.ruby, KINO], dir: @dir) { |port| assert_equal "other.ru", http_get(port).last }
    with_server([RbConfig.ruby, KINO, "third.ru"], dir: @dir, signal: "INT") do |port|
      assert_equal "third.ru", http_get(port).last
    end
  end

  # stdout and stderr are sync, as Puma makes them: what the app prints
  # reaches a pipe (Docker, systemd) at once, not when a buffer fills.
  def test_stdout_and_stderr_reach_a_pipe_at_once
    write("config.ru", %(run ->(_) { $stdout.print "out from the app\\n"; $stderr.print "err from the app\\n"; [200, {}, ["ok"]] }\n))
    with_server([RbConfig.ruby, KINO, "-p", "0", "-w", "1", "-m", "threaded"], dir: @dir) do |port, _, _, out|
      assert_equal [200, "ok"], http_get(port)
      seen = read_until(out, "out from the app", 10)
      seen << read_until(out, "err from the app", 10) unless seen.include?("err from the app")
    end
  end

  def test_a_server_that_cannot_start_exits_1
    write("config.ru", %(run ->(_) { [200, {}, ["x"]] }\n))
    _, err, status = kino("-p", "0", "-m", "ractor", dir: @dir)
    assert_equal 1, status.exitstatus
    assert_match(/\Akino: mode :ractor needs a Ractor-shareable app/, err)
  end

  # --- precedence for every flag, in process -------------------------------------

  FLAG_VALUES = {
    bind: ["-b", "0.0.0.0", "::1"],
    port: ["-p", 4000, 5000],
    workers: ["-w", 2, 3],
    threads: ["-t", 4, 5],
    mode: ["-m", :ractor, :threaded],
    log_requests: ["--log-requests=", "a.log", "b.log"],
    log_format: ["--log-format", :json, :text],
    lanes: ["--[no-]lanes", true, false],
    batch: ["--batch", 4, 8],
    max_workers: ["--max-workers", 4, 6],
    scale_down_after: ["--scale-down-after", 10.0, 20.5],
    quarantine_timeout: ["--quarantine-timeout", 30.0, 60.0],
    quarantine_max: ["--quarantine-max", 1, 0]
  }.freeze

  def test_every_option_flag_has_a_precedence_case
    assert_equal Kino::CLI::FLAGS.filter_map(&:option).sort, FLAG_VALUES.keys.sort
  end

  def test_flags_over_config_file_over_defaults_for_every_flag
    FLAG_VALUES.each do |name, (flag, file_value, flag_value)|
      default = name == :port ? 9292 : Kino::Options::DEFAULTS[name]
      FileUtils.rm_f(File.join(@dir, "kino.rb"))
      assert_equal default.inspect, Kino::Options.resolve(plan[:options])[name].inspect, "#{name}: default"

      write("kino.rb", "#{name} #{file_value.inspect}\n")
      assert_equal file_value, plan[:options][name], "#{name}: config file over the default"
      args = if flag.end_with?("=") then ["#{flag}#{flag_value}"]
             elsif flag.include?("[no-]") then [flag.sub("[no-]", flag_value ? "" : "no-")]
             else [flag, flag_value.to_s]
             end
      assert_equal flag_value, plan(*args)[:options][name], "#{name}: #{flag} over the config file"
    end
  end

  def test_environment_and_rackup_precedence
    assert_equal({ rackup: "config.ru", environment: nil }, plan.slice(:rackup, :environment))
    write("kino.rb", %(environment "staging"\nrackup "app.ru"\n))
    assert_equal({ rackup: "app.ru", environment: "staging" }, plan.slice(:rackup, :environment))
    assert_equal({ rackup: "x.ru", environment: "production" },
                 plan("-e", "production", "x.ru").slice(:rackup, :environment))
  end

  def test_config_flag_and_default_config_paths
    write("config/kino.rb", "port 1111\n")
    assert_equal 1111, plan[:options][:port]
    write("kino.rb", "port 2222\n")
    assert_equal 2222, plan[:options][:port]
    write("custom.rb", "port 3333\n")
    assert_equal 3333, plan("-C", "custom.rb")[:options][:port]
    assert_equal 4444, plan("--config", "custom.rb", "--port", "4444")[:options][:port]
  end

  def test_threads_takes_pumas_min_max
    assert_equal 16, plan("-t", "0:16")[:options][:threads]
  end
end
