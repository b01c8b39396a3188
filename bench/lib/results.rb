# frozen_string_literal: true

module Bench
  # Every number of a run, as measured, and the medians the tables show.
  class Results
    # One endpoint of one target in one repeat: status :ok, :invalid or
    # :failed; +wrk+ is a Wrk::Result when measured.
    Sample = Struct.new(:repeat, :server, :endpoint, :status, :wrk, :detail, keyword_init: true)
    # The memory of one target in one repeat (a ProcessTree::Memory).
    MemorySample = Struct.new(:repeat, :server, :memory, keyword_init: true)
    # What a table cell shows for a server and endpoint.
    Summary = Struct.new(:rps, :p99_ms, :errors, :runs, :failures, keyword_init: true)

    attr_reader :samples, :memory_samples

    def initialize
      @samples = []
      @memory_samples = []
      @target_errors = {}
      @warnings = {}
    end

    def add(sample)
      @samples << sample
    end

    def add_memory(repeat, server, memory)
      @memory_samples << MemorySample.new(repeat: repeat, server: server, memory: memory)
    end

    # Record that +server+ cannot run at all ("unavailable: ..." or
    # "failed to start: ..."); it is skipped in later repeats.
    def target_failed(server, reason)
      @target_errors[server] ||= reason
    end

    # Why +server+ cannot run, or nil.
    def target_error(server)
      @target_errors[server]
    end

    # Remember a non-fatal validation finding (missing Date/Server).
    def warn(server, endpoint, texts)
      list = (@warnings[[server, endpoint]] ||= [])
      texts.each { |text| list << text unless list.include?(text) }
    end

    def warnings(server, endpoint)
      @warnings.fetch([server, endpoint], [])
    end

    # Medians over the successful runs of +server+ on +endpoint+, plus the
    # reasons of the runs that failed; nil if it never ran.
    def summary(server, endpoint)
      runs = @samples.select { |sample| sample.server == server && sample.endpoint == endpoint }
      return nil if runs.empty?

      ok = runs.select { |sample| sample.status == :ok }.map(&:wrk)
      failures = (runs - runs.select { |sample| sample.status == :ok }).map { |s| "#{s.status}: #{s.detail}" }
      Summary.new(rps: median(ok.map(&:rps)), p99_ms: median(ok.map(&:p99_ms).compact),
                  errors: median(ok.map(&:errors)), runs: runs.size, failures: failures)
    end

    # Median RSS and PSS (MiB) of +server+ over repeats: [rss, pss].
    def memory_summary(server)
      list = @memory_samples.select { |sample| sample.server == server }.map(&:memory)
      [median(list.map(&:rss_mib)), median(list.map(&:pss_mib).compact)]
    end

    # The median of +values+, nil when there are none.
    def median(values)
      return nil if values.empty?

      sorted = values.sort
      middle = sorted.size / 2
      sorted.size.odd? ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2.0
    end
  end
end
