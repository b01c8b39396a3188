# frozen_string_literal: true

module Kino
  # A Kino server: the C engine's I/O threads plus a pool of workers that
  # run the Rack app.
  #
  #   server = Kino::Server.new(app, port: 0).start
  #   server.port          # the bound port
  #   server.stats         # live counters
  #   server.shutdown      # graceful: finish what is in flight, then stop
  class Server
    # Build, start, print the banner and serve until INT/TERM.
    def self.run(app, **options)
      new(app, **options).run
    end

    attr_reader :app, :options, :mode

    # +app+: a Rack app, or a Kino::Loader (loaded here, or in each worker
    # process with mode :cluster and preload false).
    # +config_file+: a kino.rb whose directives apply under +options+
    # (explicit options win); raises Kino::ConfigError when it is wrong.
    def initialize(app, config_file: nil, **options)
      raise ArgumentError, "the app must respond to call" unless app.respond_to?(:call) || app.is_a?(Loader)

      options = Configuration.load(config_file).server_options.merge(options) if config_file
      @options = Options.resolve(options)
      @app = load_app(app)
      @mode = resolve_mode
      check_max_workers
      @state = :new
      @lock = Mutex.new
      @changed = ConditionVariable.new
    end

    # Workers: ractors, thread groups or processes (in :cluster, the
    # current count once TTIN/TTOU changed it).
    def workers
      (@mode == :cluster && @pool&.workers) || @options[:workers] || Kino.available_parallelism
    end

    def threads
      @options[:threads] || (@mode == :ractor ? 1 : 3)
    end

    # The port of the first TCP listener, as bound (the requested one
    # before #start; nil when every listener is a unix socket).
    def port
      return @port if @port

      first = Options.listeners(@options).find { |l| l.kind == :tcp }
      first&.port
    end

    # The first of #urls.
    def url
      urls.first
    end

    # Every listener's address, in the order bind gives them:
    # "http://127.0.0.1:9292", "unix:///run/app.sock", "https://...".
    def urls
      return @listeners.zip(@bound).map { |l, b| l.display(b[:port]) } if @bound

      Options.listeners(@options).map(&:display)
    end

    # The control plane's address once started ("http://127.0.0.1:9293",
    # "unix:///run/kino-control.sock"), else nil.
    def control_url
      return nil unless @control

      where = Listeners.control(@options[:control_bind])
      return "unix://#{where[:path]}" if where[:path]

      "http://#{where[:host].include?(':') ? "[#{where[:host]}]" : where[:host]}:#{Native.control_port(@control)}"
    end

    # Bind, listen and start the workers; returns self once listening.
    def start
      @lock.synchronize do
        raise Error, "server already started" unless @state == :new

        restarted = ENV.key?(Inherit::RESTART_VAR) # a hot restart: the pidfile is already ours
        @pidfile = Pidfile.new(@options[:pidfile]).claim!(restarted: restarted) if @options[:pidfile]
        begin
          @listeners = Inherit.apply(listeners, proxy_protocol: @options[:proxy_protocol]) # hot restart, systemd
          @access_log = AccessLog.open(@options) # opened before any fork: :cluster workers share it
          @id = Native.server_new(Options.native(@options, @listeners).merge(@access_log.native))
          Native.server_start(@id) unless @mode == :cluster # each worker process starts its own engine
          @bound = Native.server_listeners(@id)
          @port = @bound.zip(@listeners).find { |b, _| b[:kind] == :tcp }&.first&.fetch(:port)
          @control = start_control
          @pool = start_workers
          @publisher = ControlPublisher.start(@control, self) if @control && @mode == :cluster
          Native.control_state(@control, :running) if @control && @mode != :cluster # :cluster: once a worker serves
        rescue Exception # rubocop:disable Lint/RescueException
          @publisher&.stop
          Native.control_free(@control) if @control
          if @id
            Native.server_stop(@id)
            Native.server_free(@id)
          end
          @access_log&.close
          @pidfile&.release
          raise
        end
        @state = :running
      end
      Hooks.call(@options[:after_boot], :after_boot)
      self
    end

    # Graceful shutdown: stop accepting at once, close idle connections,
    # let in-flight and queued requests finish (their responses say
    # "Connection: close") for up to +timeout+ seconds (shutdown_timeout by
    # default), then answer the rest with 500 and stop the workers.
    # Idempotent; a second caller waits for the first.
    def shutdown(timeout: nil)
      @lock.synchronize do
        @changed.wait(@lock) while @state == :stopping
        return nil unless @state == :running

        @state = :stopping
      end
      drain(timeout.nil? ? @options[:shutdown_timeout] : timeout)
      @access_log.close # writes every queued line first
      Log.flush
      @pidfile&.release
      @lock.synchronize do
        @state = :stopped
        @changed.broadcast
      end
      nil
    end

    # Block until the server has stopped.
    def wait
      @lock.synchronize { @changed.wait(@lock) until @state == :stopped }
      self
    end

    def running?
      @state == :running
    end

    # Make stdout and stderr sync, start, print the banner, stop gracefully
    # on INT or TERM (a second signal exits at once), and wait.
    def run
      $stdout.sync = true # log lines reach a pipe or file (Docker, systemd) as they are written
      $stderr.sync = true
      Restart.command # the command line a hot restart runs again, as it is now
      start
      previous = trap_signals # before the banner: whoever sees it may signal
      Log.info("main", banner)
      Systemd.notify("READY=1\nSTATUS=serving #{urls.join(' ')}\nMAINPID=#{Process.pid}")
      Systemd.start_watchdog { running? }
      wait
      self
    ensure
      previous&.each { |signal, handler| Signal.trap(signal, handler || "DEFAULT") }
    end

    # Counters (README, Stats): the configuration, then while running accepted,
    # connections, served, queued, in_flight, rejected, timeouts, errors,
    # queue_wait_ms (a histogram: upper bound in ms => requests),
    # queue_wait_sum_ms (the time they all waited), the pool's
    # active_workers, max_workers, scale_ups, scale_downs, quarantined and
    # quarantines (Pool#tally), and per_worker rows ({worker:, served:,
    # in_flight:, busy_ms:, lane:, quarantined:}; lane: requests waiting
    # in its threads' lanes; a worker in quarantine and the one started
    # in its place share a number, one row each); with lanes,
    # lane_depths: the requests waiting in each worker thread's lane.
    #
    # In :cluster mode the master asks every worker process and adds their
    # counters up (ProcessPool#stats); each per_worker row is one process
    # and also has pid:, state:, accepted:, connections: and respawns: (its
    # threads replaced). The top-level respawns counts replaced processes.
    def stats
      base = { mode: @mode, workers: workers, threads: threads, io_threads: @options[:io_threads],
               respawns: @pool ? @pool.respawns : 0, log_dropped: Native.log_dropped }
      return base unless @id && %i[running stopping].include?(@state)
      return base.merge(@pool.stats) if @mode == :cluster # its tally included

      live = Native.server_stats(@id)
      stats = base.merge(live.except(:threads_detail)).merge(@pool.tally)
                  .merge(per_worker: per_worker(live[:threads_detail]))
      @options[:lanes] ? stats.merge(lane_depths: live[:threads_detail].map { |row| row[:lane] }) : stats
    end

    # The stats as one line (what kill -USR1 prints).
    def stats_line
      s = stats
      scalars = s.except(:per_worker, :queue_wait_ms).map { |k, v| "#{k}=#{v}" }
      waits = (s[:queue_wait_ms] || {}).reject { |_, n| n.zero? }
                                       .map { |ms, n| "#{ms.infinite? ? '>2500' : "<=#{ms}"}ms:#{n}" }
      workers = (s[:per_worker] || []).map do |w|
        pid = w[:pid] ? "[pid #{w[:pid]}]" : ""
        name = "#{w[:worker]}#{pid}#{'(quarantined)' if w[:quarantined]}"
        w[:state] && w[:state] != :serving ? "#{name}:#{w[:state]}" : "#{name}:#{w[:served]}/#{w[:in_flight]}/#{w[:busy_ms]}ms"
      end
      line = "stats: #{scalars.join(' ')}"
      line += " queue_wait=#{waits.join(',')}" unless waits.empty?
      line += " workers(served/in_flight/busy)=#{workers.join(',')}" unless workers.empty?
      line
    end

    def banner
      [
        "Kino #{VERSION} (#{RUBY_DESCRIPTION})",
        "- mode: #{@mode}, #{workers} worker#{'s' if workers != 1}#{' (processes)' if @mode == :cluster} " \
        "× #{threads} thread#{'s' if threads != 1}",
        *pool_line,
        "- pid: #{Process.pid}",
        *urls.map { |u| "- listening: #{u}" },
        "- tls: #{tls_status}",
        *(control_url ? ["- control: #{control_url} (/live /ready /stats /metrics)"] : []),
        "- Ctrl-C to stop"
      ].join("\n")
    end

    # The drain every engine gets: stop accepting, let in-flight and
    # queued requests finish for up to +timeout+ seconds, answer the rest
    # with 500, stop the I/O threads and +pool+, yield (the block may still
    # read the stats), free the engine. Used by #shutdown and by each
    # :cluster worker process on its own engine.
    def self.drain_engine(id, pool, timeout)
      now = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
      deadline = now.call + timeout
      Native.server_drain(id)
      sleep 0.005 until Native.server_outstanding(id).zero? || now.call >= deadline
      Native.server_abort(id) unless Native.server_outstanding(id).zero?
      Native.server_stop(id)
      pool.stop(grace: 1.0)
      yield if block_given?
      Native.server_free(id) # false (and nothing freed) if a worker is still inside
    end

    private

    # The banner's line on the elastic pool and quarantine, when either is on.
    def pool_line
      parts = []
      parts << "up to #{@options[:max_workers]} workers under a backlog" if @options[:max_workers]
      parts << "quarantine after #{@options[:quarantine_timeout]} s on one request" if @options[:quarantine_timeout]
      parts.empty? ? [] : ["- pool: #{parts.join(', ')}"]
    end

    # max_workers below the number of workers, once that is known (the
    # CPUs when workers is nil).
    def check_max_workers
      max = @options[:max_workers]
      return unless max && max < workers

      raise ArgumentError, "invalid max_workers: #{max} (expected at least workers, #{workers}, or nil)"
    end

    # The banner's TLS line: on or off, and the library this build has.
    def tls_status
      library = Native::TLS
      return "off (this build has no TLS: OpenSSL was not found when it was compiled)" unless library

      @options[:tls] ? "on (#{library})" : "off (available: #{library})"
    end

    # The app, loaded now if it is a Loader -- unless each :cluster worker
    # process loads it (preload false). A preload false that cannot apply
    # (the app was built before the server) says so once.
    def load_app(app)
      lazy = @options[:mode] == :cluster && !@options[:preload]
      return lazy ? app : app.load if app.is_a?(Loader)

      Log.warn("main", "preload false has no effect here: the app was loaded before the server " \
                       "(`kino` with a rackup file loads it in each worker process)") if lazy
      app
    end

    # :threaded and :cluster as asked; :ractor as asked, if Kino::Check
    # finds no blocker in the app and the hooks that run in workers are
    # shareable (else UnshareableAppError); :auto picks :ractor when they
    # are and otherwise warns once (a Rails app: one line of information)
    # and picks :threaded.
    def resolve_mode
      return @options[:mode] if %i[threaded cluster].include?(@options[:mode])

      blocker = ractor_blocker
      if @options[:mode] == :ractor && blocker
        raise UnshareableAppError,
              "mode :ractor needs a Ractor-shareable app and hooks, but #{blocker}. " \
              "Make it shareable (a module with self.call, Ractor.make_shareable(app), or " \
              "Kino.shareable_app { ->(env) { ... } }), or use mode: :threaded. " \
              "Kino::Check.report(app) (kino --check) lists every blocker."
      end
      return :ractor unless blocker

      if rails?
        # Rails apps are never shareable: no warning, one line of information
        Log.info("main", "serving this Rails app in mode :threaded (mode :auto; say mode :cluster to use every core)")
      else
        Log.warn("main", "#{blocker}; serving in mode :threaded (run `kino --check` or Kino::Check.report(app) to see why)")
      end
      :threaded
    end

    # Whether this process loaded a Rails application (what `rails server`
    # serves).
    def rails?
      defined?(::Rails) && ::Rails.respond_to?(:application) && !::Rails.application.nil?
    end

    # Why the app cannot run in worker ractors, or nil.
    # Kino::Check's verdict, not Ractor.shareable? alone: a class passes
    # Ractor.shareable? whatever state it keeps (Sinatra, Roda).
    def ractor_blocker
      return "the app is a Rails application" if rails?

      check = Check.report(@app)
      return "the app is not Ractor-shareable (#{check[:findings].first})" unless check[:shareable]

      %i[on_error on_worker_boot].each do |name| # the hooks that run inside workers
        hook = @options[name]
        return "the #{name} hook is not Ractor-shareable" if hook && !Ractor.shareable?(hook)
      end
      nil
    end

    # The control plane (control_bind), listening and answering "booting"
    # until the workers are up; nil when it is not configured.
    def start_control
      return nil unless @options[:control_bind]

      where = Listeners.control(@options[:control_bind])
      inherited = Restart.control_fd(@options[:control_bind]) # a hot restart: the same socket, still listening
      control = Native.control_new(@id, where.merge(token: @options[:control_token], mode: @mode.to_s,
                                                    workers: workers, threads: threads,
                                                    io_threads: @options[:io_threads], lanes: @options[:lanes],
                                                    published: @mode == :cluster, fd: inherited))
      Native.control_start(control)
      control
    end

    def start_workers
      handler = ErrorHandler.new(@options[:on_error])
      hooks = @options.slice(:on_worker_boot, :on_worker_exit, :before_fork)
      tuning = @options.slice(:quarantine_timeout, :quarantine_max, :max_workers, :scale_down_after)
      shape = { workers: workers, threads: threads, handler: handler, hooks: hooks, tuning: tuning }
      case @mode
      when :cluster
        pool = ProcessPool.new(@id, @app, shutdown_timeout: @options[:shutdown_timeout], **shape)
        pool.on_serving = ->(serving) { serving_changed(serving) }
        pool.start
      when :ractor then RactorPool.new(@id, @app, **shape).start
      else ThreadPool.new(@id, @app, **shape).start
      end
    end

    # The listeners bind names; Kino::Error when one cannot be served here.
    def listeners
      Options.listeners(@options)
    rescue ArgumentError => e
      raise Error, e.message
    end

    # The threads' rows summed per worker (a worker in quarantine apart
    # from the one that took its number).
    def per_worker(rows)
      rows.group_by { |row| [row[:worker], row[:quarantined] ? 1 : 0] }.sort.map do |(worker, quarantined), list|
        { worker: worker, served: list.sum { |r| r[:served] }, in_flight: list.sum { |r| r[:in_flight] },
          busy_ms: list.sum { |r| r[:busy_ms] }, lane: list.sum { |r| r[:lane] }, quarantined: quarantined == 1 }
      end
    end

    def drain(timeout)
      Systemd.notify("STOPPING=1\nSTATUS=draining") unless @restarting
      Native.control_state(@control, :draining) if @control # /ready: 503 from now on
      release_control = -> { Native.control_free(@control) if @control } # before the engine it reads
      return Server.drain_engine(@id, @pool, timeout, &release_control) unless @mode == :cluster

      @pool.stop # every worker process drains its own engine
      @publisher&.stop
      Native.server_stop(@id) # the master's engine never started: this closes the listeners
      release_control.call
      Native.server_free(@id)
    end

    # :cluster: /ready says 200 while at least one worker process serves
    # (the listener is the master's: any serving worker takes its
    # connections), 503 "booting" before the first and while none does;
    # "draining" once a stop or restart began stays.
    def serving_changed(serving)
      @lock.synchronize do
        return unless @control && %i[new running].include?(@state)

        Native.control_state(@control, serving.positive? ? :running : :booting)
      end
    end

    # INT/TERM: graceful shutdown, the second one exits at once (in
    # :cluster, after KILLing the workers); USR1: print the stats line;
    # TTIN/TTOU (:cluster): one worker process more or fewer; URG
    # (:cluster): phased restart; HUP: reopen
    # every log file this process opened (the access log, Kino::Logger
    # files), for logrotate. Handlers only start threads or queue lines: a
    # trap context may not take locks. A :cluster
    # worker runs them only in the moment between its fork and its own
    # handlers (ClusterWorker): there they do nothing, or end it. Returns
    # the previous handlers.
    def trap_signals
      signalled = false
      master = Process.pid
      previous = %w[INT TERM].to_h do |signal|
        handler = Signal.trap(signal) do
          exit!(0) unless Process.pid == master # a :cluster worker, forked a moment ago, not yet booted
          if signalled # the second signal: stop now
            @pool.kill if @mode == :cluster
            exit!(1)
          end
          signalled = true
          Log.warn("main", "#{signal} received, finishing requests (send it again to stop now)")
          Thread.new { shutdown }
        end
        [signal, handler]
      end
      master_only = ->(&action) { proc { Thread.new(&action) if Process.pid == master } }
      previous["USR1"] = Signal.trap("USR1", &master_only.call { Log.info("main", stats_line) })
      previous["USR2"] = Signal.trap("USR2", &master_only.call { restart })
      if @mode == :cluster
        previous["TTIN"] = Signal.trap("TTIN", &master_only.call { @pool.grow })
        previous["TTOU"] = Signal.trap("TTOU", &master_only.call { @pool.shrink })
        previous["URG"] = Signal.trap("URG", &master_only.call { phased_restart })
      end
      previous["HUP"] = Signal.trap("HUP", &master_only.call { reopen_logs })
      previous
    end

    # URG (:cluster): replace the worker processes one at a time
    # (ProcessPool#phased_restart); the master and its listeners stay.
    def phased_restart
      return unless running?

      Log.warn("main", "URG received, phased restart: replacing #{workers} worker process(es) one at a time")
      replaced = @pool.phased_restart
      Log.info("main", "phased restart done: #{replaced} worker process(es) replaced") if replaced
    end

    # HUP: reopen this process's log files, and in :cluster have every
    # worker process reopen its own (each has its own sink since the fork).
    def reopen_logs
      Log.info("main", "HUP: reopened #{Native.log_reopen_all} log file(s)")
      @pool.reopen_logs if @mode == :cluster
    end

    # Hot restart (SIGUSR2): keep the listening sockets open, drain like a
    # graceful shutdown (in-flight requests finish, keep-alive clients get
    # "Connection: close", new connections wait in the backlog), then run
    # the same command line again in this process, handing it the sockets
    # -- the control plane's listener too: it answers ("draining") until
    # the drain ends, probes then wait in its backlog, and the new program
    # answers them on the same address. The pidfile stays: the pid does not change. When the command cannot
    # be run the process exits with status 1 (its supervisor restarts it).
    def restart
      @lock.synchronize do
        return unless @state == :running

        @state = :stopping
        @restarting = true
      end
      Log.warn("main", "USR2 received, restarting (finishing requests, new connections wait)")
      Systemd.notify("RELOADING=1\nSTATUS=restarting")
      pairs = @listeners.zip(@bound).map { |l, b| [l, b[:fd]] }
      Native.server_keep_listeners(@id)
      control = [Native.control_keep_listener(@control), @options[:control_bind]] if @control # answers on
      drain(@options[:shutdown_timeout])
      @access_log.close # exec ends the flusher thread: every queued line first
      Log.flush
      Restart.exec(pairs, control: control)
    rescue SystemCallError => e
      Log.error("main", "cannot restart (#{e.message}); exiting")
      Log.flush
      exit!(1)
    end
  end
end
