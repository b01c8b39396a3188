# frozen_string_literal: true

require "etc"
require "fileutils"
require "rbconfig"

module Bench
  # Turns Results into the Markdown tables, the results file and the CSV.
  class Report
    BASELINE = "puma-cluster"
    CSV_COLUMNS = %w[kind repeat server endpoint status req_per_sec p99_ms requests connect_errors read_errors
                     write_errors timeout_errors non_2xx rss_mib pss_mib processes detail].freeze

    # +commands+: server name => the command of its first start;
    # +options+: the parsed options; +command+: the command line as typed.
    def initialize(results, commands, options, command)
      @results = results
      @commands = commands
      @servers = options[:servers]
      @options = options
      @command = command
    end

    # Both tables, as Markdown.
    def tables
      "#{throughput_table}\n#{memory_table}"
    end

    # Write <dir>/<timestamp>.md and .csv; returns the .md path.
    def write(dir)
      FileUtils.mkdir_p(dir)
      base = File.join(dir, Time.now.strftime("%Y%m%d-%H%M%S"))
      File.write("#{base}.md", "#{header}\n#{tables}")
      File.write("#{base}.csv", csv)
      "#{base}.md"
    end

    # One row per server and endpoint: medians over repeats.
    def throughput_table
      rows = @servers.flat_map { |server| throughput_rows(server) }
      markdown(["server", "endpoint", "req/s", "p99 (ms)", "vs #{BASELINE}", "errors", "notes"], rows)
    end

    # The rows of one server (a single row when it never ran).
    def throughput_rows(server)
      failure = @results.target_error(server)
      rows = endpoints_of(server).filter_map { |endpoint| throughput_row(server, endpoint, failure) }
      rows.empty? && failure ? [[server, "-", failure, "", "", "", ""]] : rows
    end

    # One table row, or nil if the endpoint was never run.
    def throughput_row(server, endpoint, target_failure)
      summary = @results.summary(server, endpoint)
      return nil unless summary

      notes = @results.warnings(server, endpoint).dup
      notes << "#{summary.failures.size}/#{summary.runs} runs: #{summary.failures.first}" if summary.rps && summary.failures.any?
      notes << "later: #{target_failure}" if target_failure
      return [server, endpoint, summary.failures.first, "", "", "", notes.join("; ")] unless summary.rps

      notes << "wrk gave no p99 (see README)" unless summary.p99_ms
      [server, endpoint, format_int(summary.rps), summary.p99_ms ? format("%.2f", summary.p99_ms) : "n/a",
       ratio(summary.rps, baseline_rps(endpoint)), format_int(summary.errors), notes.join("; ")]
    end

    # Median RSS/PSS of each server's process tree.
    def memory_table
      baseline_pss = @results.memory_summary(BASELINE).last
      rows = @servers.filter_map do |server|
        rss, pss = @results.memory_summary(server)
        next unless rss

        [server, format("%.1f", rss), pss ? format("%.1f", pss) : "n/a", ratio(pss, baseline_pss)]
      end
      markdown(["server", "RSS MiB", "PSS MiB", "PSS vs #{BASELINE}"], rows)
    end

    # Date, machine, versions, the command line and every server's command.
    def header
      lines = ["# Kino benchmark, #{Time.now.strftime('%Y-%m-%d %H:%M:%S %z')}", "",
               "- machine: `#{`uname -srm`.strip}`, CPU: #{cpu_model}, nproc: #{Etc.nprocessors}",
               "- ruby: `#{`#{RbConfig.ruby} -v`.strip}`",
               "- wrk: `#{Wrk.version}`",
               "- command: `#{@command}`",
               "- load: wrk -t#{Wrk::THREADS} -c#{@options[:connections]} -d#{@options[:duration]}s --latency, " \
               "after a #{@options[:warmup]} s warm-up; medians of #{@options[:repeat]} repeat(s); " \
               "workers #{@options[:workers]}, threads #{@options[:threads]}",
               "", "Servers (as first started; every start takes the next unused port from #{@options[:port]}):", ""]
      lines.concat(@commands.map { |server, argv| "- #{server}: `#{argv.join(' ')}`" })
      "#{lines.join("\n")}\n"
    end

    # Every sample, one CSV line each (load runs, then memory).
    def csv
      lines = [CSV_COLUMNS.join(",")]
      @results.samples.each { |sample| lines << csv_line(load_fields(sample)) }
      @results.memory_samples.each { |sample| lines << csv_line(memory_fields(sample)) }
      "#{lines.join("\n")}\n"
    end

    private

    def load_fields(sample)
      wrk = sample.wrk
      ["load", sample.repeat, sample.server, sample.endpoint, sample.status, wrk&.rps, wrk&.p99_ms, wrk&.requests,
       wrk&.connect_errors, wrk&.read_errors, wrk&.write_errors, wrk&.timeout_errors, wrk&.non2xx, nil, nil, nil,
       sample.detail]
    end

    def memory_fields(sample)
      memory = sample.memory
      ["memory", sample.repeat, sample.server, nil, "ok", nil, nil, nil, nil, nil, nil, nil, nil,
       memory.rss_mib.round(1), memory.pss_mib&.round(1), memory.processes, nil]
    end

    # A CSV line; fields with commas, quotes or newlines are quoted.
    def csv_line(fields)
      fields.map do |field|
        text = field.to_s
        text.match?(/[",\n]/) ? "\"#{text.gsub('"', '""')}\"" : text
      end.join(",")
    end

    # The endpoints selected and served by +server+, in the selected order.
    def endpoints_of(server)
      @options[:endpoints].select { |name| Targets.endpoints(server).include?(name) }
    end

    def baseline_rps(endpoint)
      @results.summary(BASELINE, endpoint)&.rps
    end

    # "1.23x", or "-" without both numbers.
    def ratio(value, baseline)
      value && baseline&.positive? ? format("%.2fx", value / baseline) : "-"
    end

    # 123456.7 -> "123,457"
    def format_int(value)
      value.round.to_s.reverse.scan(/\d{1,3}/).join(",").reverse
    end

    def cpu_model
      File.read("/proc/cpuinfo")[/^model name\s*:\s*(.+)$/, 1] || RbConfig::CONFIG["host_cpu"]
    rescue SystemCallError
      RbConfig::CONFIG["host_cpu"]
    end

    # A Markdown table; "|" inside cells is escaped.
    def markdown(head, rows)
      lines = [head, head.map { "---" }, *rows].map do |cells|
        "| #{cells.map { |cell| cell.to_s.gsub('|', '\\|').tr("\n", ' ') }.join(' | ')} |"
      end
      "#{lines.join("\n")}\n"
    end
  end
end
