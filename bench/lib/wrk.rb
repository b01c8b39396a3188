# frozen_string_literal: true

module Bench
  # Runs wrk and reads its report.
  module Wrk
    THREADS = 2

    # One wrk run: throughput, 99th percentile latency and the error counts
    # it printed; +error+ is set when the run itself failed.
    Result = Struct.new(:rps, :p99_ms, :requests, :connect_errors, :read_errors, :write_errors,
                        :timeout_errors, :non2xx, :error, keyword_init: true) do
      # Socket errors plus non-2xx/3xx responses.
      def errors
        connect_errors + read_errors + write_errors + timeout_errors + non2xx
      end
    end

    UNITS_MS = { "us" => 0.001, "ms" => 1.0, "s" => 1000.0, "m" => 60_000.0, "h" => 3_600_000.0 }.freeze

    # The first line of `wrk -v`, or nil when wrk is not installed.
    def self.version
      IO.popen(%w[wrk -v], err: %i[child out], &:read).lines.first&.strip
    rescue SystemCallError
      nil
    end

    # The wrk command line for +endpoint+ at +url+.
    def self.command(url, endpoint, duration:, connections:)
      argv = ["wrk", "-t#{THREADS}", "-c#{connections}", "-d#{duration}s", "--latency"]
      argv.push("-s", endpoint.script) if endpoint.script
      argv << url
      argv.push("--", *endpoint.script_args) if endpoint.script_args
      argv
    end

    # Run wrk; returns a Result (with +error+ set if wrk failed or
    # completed no request) and wrk's output.
    def self.run(url, endpoint, duration:, connections:)
      output, status = capture(command(url, endpoint, duration: duration, connections: connections))
      result = parse(output)
      result.error ||= "wrk exited with #{status.exitstatus}: #{output.lines.last&.strip}" unless status.success?
      [result, output]
    end

    # Run +argv+, return [output, status]; on an exception (Ctrl-C) the
    # child is terminated instead of left running.
    def self.capture(argv)
      reader, writer = IO.pipe
      pid = Process.spawn(*argv, in: File::NULL, %i[out err] => writer)
      writer.close
      output = reader.read
      Process.wait(pid)
      pid = nil
      [output, $?]
    ensure
      reader&.close
      writer&.close unless writer&.closed?
      if pid
        Process.kill("TERM", pid) rescue nil # rubocop:disable Style/RescueModifier
        Process.wait(pid) rescue nil # rubocop:disable Style/RescueModifier
      end
    end

    # Read Requests/sec, the 99% latency, socket errors and non-2xx/3xx
    # responses from wrk's report. +p99_ms+ is nil when wrk prints 0: its
    # latency correction can leave the percentiles empty (wg/wrk#236).
    def self.parse(output)
      sockets = output.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/)
      latency = output.match(/^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$/)
      rps = output[%r{^Requests/sec:\s+([\d.]+)}, 1]&.to_f
      result = Result.new(rps: rps, p99_ms: latency && latency[1].to_f * UNITS_MS.fetch(latency[2]),
                          requests: output[/^\s*(\d+) requests in /, 1].to_i,
                          connect_errors: sockets ? sockets[1].to_i : 0, read_errors: sockets ? sockets[2].to_i : 0,
                          write_errors: sockets ? sockets[3].to_i : 0, timeout_errors: sockets ? sockets[4].to_i : 0,
                          non2xx: output[/Non-2xx or 3xx responses: (\d+)/, 1].to_i)
      result.p99_ms = nil if result.p99_ms&.zero? # wrk's percentile bug (README), not a real 0
      result.error = "no requests completed" if rps.nil? || result.requests.zero?
      result
    end
  end
end
