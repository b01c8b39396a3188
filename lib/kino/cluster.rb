# frozen_string_literal: true

require "socket"

module Kino
  # The workers of :cluster mode, seen from the master process: +workers+
  # forked child processes, each running the Kino engine with a ThreadPool
  # of +threads+ threads (the :threaded serve loop, ClusterWorker).
  #
  # The listener is bound once, in the master (Kino::Native.server_new
  # binds and listens but starts no thread); every child inherits it and
  # starts its own engine on it (Kino::Native.server_start), and the
  # engine's EPOLLEXCLUSIVE registration wakes one process per connection.
  # The master never starts the engine and never runs the app.
  #
  # Each child has a control socket (a UNIX socketpair) to the master:
  #   - the child writes "ready\n" once it serves: a child that ends before
  #     that died while booting (replaced after Backoff's delay), one that
  #     ends after it died serving (replaced at once);
  #   - the master asks "stats SEQ\n"; a thread in the child answers with a
  #     4-byte length and Marshal.dump([SEQ, stats]) (#stats aggregates);
  #   - end of file tells the child that the master is gone: it drains and
  #     exits.
  #
  # TERM drains a child (ClusterWorker); #grow and #shrink (TTIN, TTOU)
  # change the number of children; #phased_restart replaces them one at a
  # time; the supervisor (Pool) replaces a child that dies, calling
  # on_worker_exit in the master.
  #
  # Quarantine (doc/pool.md) works at two levels. Inside each child its
  # own ThreadPool quarantines a thread group that one request has held
  # for quarantine_timeout and starts another in the same process, exactly
  # as in :threaded mode: the requests that process already took are
  # served by the new threads, nothing is lost. The master's watcher asks
  # every child for its stats each TICK, and a child that has not answered
  # for quarantine_timeout -- its interpreter lock held by a C call, so
  # nothing in it can run -- is quarantined here: KILLed at once and
  # replaced in its slot (the requests it held are lost with it).
  #
  # The elastic pool adds children above +workers+ and retires them (TERM:
  # they drain) as #grow and #shrink do.
  class ProcessPool < Pool
    # One forked worker: its slot, pid and control socket (+inbox+ reads
    # the frames it sends there: Frames); +ready+ once it
    # said so; +retiring+ once #shrink, #stop or #phased_restart asked it
    # to end, +replacing+ when a new child takes its slot at once;
    # +ended+ once the supervisor took its exit. +last+: its latest stats
    # answer (or final report); +answered_at+: when it last answered;
    # +quarantined+ once KILLed for not answering.
    Child = Struct.new(:slot, :pid, :control, :inbox, :ready, :retiring, :replacing, :ended, :lock, :seq, :last,
                       :answered_at, :quarantined, keyword_init: true)

    # How long the master waits for a child's stats answer.
    STATS_TIMEOUT = 1.0
    # The counters of a child's stats that say what is happening now. Its
    # other Integer counters (accepted, served, rejected, timeouts,
    # errors, hijacked, ...) only grow: what children that ended had
    # counted stays in the totals, so they never go down when a worker is
    # replaced.
    GAUGES = %i[connections queued in_flight quarantined].freeze
    # The counters of a per_worker row, carried over from the children
    # that ended in its slot: a row's counters never go down either.
    ROW_COUNTERS = %i[served busy_ms accepted respawns].freeze

    # What the master does to its heap before the first fork, when the
    # app is preloaded: :gc, a full GC.start, so garbage left by loading
    # the app is not collected in every child (each collection writes to
    # the pages the children share copy-on-write); :compact, GC.start then
    # GC.compact; :none. doc/cluster.md has the figures: :gc took the
    # tree's PSS from 400 to 225 MiB, and compaction added nothing
    # measurable, so :gc is the default.
    FORK_GC = %i[none gc compact].freeze
    class << self
      attr_reader :fork_gc

      def fork_gc=(value)
        raise ArgumentError, "fork_gc: one of #{FORK_GC.inspect}" unless FORK_GC.include?(value)

        @fork_gc = value
      end
    end
    self.fork_gc = :gc

    # +app+: the app, or a Loader that each child loads after the fork
    # (preload false). Children drain for at most +shutdown_timeout+ s.
    def initialize(server_id, app, shutdown_timeout:, **options)
      super(server_id, app, **options)
      @shutdown_timeout = shutdown_timeout
      @children = {}    # slot => the child serving it
      @quarantined = {} # pid => a child KILLed for not answering, until it is reaped
      @base = @workers  # the children kept without a backlog (TTIN, TTOU)
      @events = Queue.new
      @idle = ConditionVariable.new
      @lock = Mutex.new
      @retired = Hash.new(0)
      @retired_waits = Hash.new(0)
      @carried = Hash.new { |carried, slot| carried[slot] = Hash.new(0) }
      @changed = ConditionVariable.new
      @phasing = Mutex.new
      @forking = Mutex.new # a fork, or a thread starting (#thread)
    end

    # What a child process reads of the pool it was forked from (its copy
    # of the master's): the server, the app (or the Loader it loads), how
    # long it may drain, and #boot_hook and #child_pool.
    attr_reader :server_id, :app, :shutdown_timeout

    def boot_hook
      @hooks[:on_worker_boot]
    end

    # The pool a child runs in its own process: worker +worker+'s
    # +threads+ threads serving +app+, with this pool's handler and
    # quarantine settings (a child quarantines its own threads; growing
    # and shrinking are the master's).
    def child_pool(app, worker)
      ThreadPool.new(@server_id, app, workers: 1, threads: @threads, handler: @handler, hooks: {},
                                      first_worker: worker, tuning: @tuning.slice(:quarantine_timeout, :quarantine_max))
    end

    # Called with the number of children that serve, each time it may
    # have changed (a child said "ready", or ended): what /ready says.
    attr_writer :on_serving

    # The number of children the pool keeps without a backlog (#grow and
    # #shrink change it; the elastic pool may add more for a while).
    def workers
      @base
    end

    def start
      prepare_heap unless @app.is_a?(Loader)
      super
    end

    # One more child (TTIN).
    def grow
      @events << :grow
      self
    end

    # One child fewer, never below one (TTOU): the highest-numbered child
    # drains and is not replaced.
    def shrink
      @events << :shrink
      self
    end

    # Graceful stop: TERM to every child (each drains for up to
    # shutdown_timeout seconds), wait for them, KILL whatever is left
    # +grace+ seconds after that, then end the supervisor.
    def stop(grace: 5.0)
      @stopping = true
      stop_watch
      @lock.synchronize { @children.each_value { |child| retire(child) } }
      deadline = now + @shutdown_timeout + grace
      @lock.synchronize do
        @idle.wait(@lock, deadline - now) while !(@children.empty? && @quarantined.empty?) && now < deadline
        everyone.each { |child| signal(child, "KILL") }
      end
      @events << :stop
      @supervisor&.join
      self
    end

    # HUP to every child: each reopens its own log files (logrotate).
    def reopen_logs
      @lock.synchronize { everyone.each { |child| signal(child, "HUP") } }
    end

    # KILL every child at once (a second INT or TERM). Safe in a trap
    # handler: it takes no lock.
    def kill
      everyone.each { |child| signal(child, "KILL") }
    end

    # Replace every child, one at a time, each only once the one before
    # serves (phased restart, SIGURG): the app is loaded again in each new
    # child, so new code is picked up while the other children serve.
    # Only with preload false (with preload the children are forks of the
    # master's app: USR2 restarts the master). Stops at a new child that
    # dies while booting (the supervisor keeps retrying its slot; the rest
    # keep the code they run). Returns the number of children replaced,
    # or nil when it could not run.
    def phased_restart
      unless @app.is_a?(Loader)
        Log.warn("main", "phased restart: needs preload false (the workers fork the master's app; USR2 restarts it)")
        return nil
      end
      unless @phasing.try_lock
        Log.warn("main", "phased restart: one is already running")
        return nil
      end
      begin
        replace_each
      ensure
        @phasing.unlock
      end
    end

    # The pids of the children, by worker number.
    def pids
      @lock.synchronize { @children.values.sort_by(&:slot).map(&:pid) }
    end

    # The workers' counters added up, in Kino::Server#stats' vocabulary:
    # each Integer counter summed, queue_wait_ms summed bucket by bucket
    # (the counters that only grow include what ended workers had counted:
    # their final report when they drained, else their last answer; a
    # child that does not answer counts with its last answer), and
    # per_worker with one row per child: worker, pid, state (:serving,
    # :booting, or :unresponsive when it did not answer within
    # STATS_TIMEOUT), served, in_flight, busy_ms, accepted, connections,
    # respawns (threads replaced) and lane (requests in its lanes). A row's served, busy_ms, accepted
    # and respawns include the children that ended in its slot, so a
    # Prometheus counter per worker never goes down when one is replaced.
    # Each row also says quarantined (the child has threads in quarantine,
    # or it was KILLed for not answering); then the pool's tally
    # (Pool#tally), with the children's quarantines added to the master's.
    # The children are asked at once, in parallel.
    def stats
      children, total, waits, carried = @lock.synchronize do
        [everyone.sort_by { |child| [child.slot, child.quarantined ? 1 : 0] }, @retired.dup, @retired_waits.dup,
         @carried.transform_values(&:dup)]
      end
      answers = children.map { |child| thread("kino-ask-#{worker_of(child.slot)}") { ask(child) } }.map(&:value)
      GAUGES.each { |key| total[key] = 0 }
      rows = children.zip(answers).map do |child, answer|
        counted = answer || child.last
        if counted
          counters(counted).each { |key, n| total[key] += n }
          counted[:queue_wait_ms].each { |bound, n| waits[bound] += n }
        end
        row(child, answer, counted, carried.fetch(child.slot, Hash.new(0)))
      end
      own = tally
      total[:quarantined] += own.delete(:quarantined)
      total[:quarantines] += own.delete(:quarantines)
      total.merge(own).merge(queue_wait_ms: waits.sort_by(&:first).to_h, per_worker: rows)
    end

    private

    def slots
      (0...@workers).to_a
    end

    # Fork the child of +slot+. before_fork runs here, in the master.
    def spawn(slot)
      Hooks.call(@hooks[:before_fork], :before_fork)
      parent, child_end = UNIXSocket.pair
      pid = fork_child(slot, child_end, parent)
      child_end.close
      child = Child.new(slot: slot, pid: pid, control: parent, inbox: Frames.new(parent), ready: false,
                        retiring: false, lock: Mutex.new,
                        seq: 0, last: nil, quarantined: false)
      @lock.synchronize { @children[slot] = child }
      watch(child)
    end

    def fork_child(slot, control, parent)
      others = @lock.synchronize { everyone.map(&:control) } << parent
      @forking.synchronize do
        Process.fork do
          others.each { |io| io.close unless io.closed? }
          ClusterWorker.new(self, worker_of(slot), control).run
        end
      end
    end

    # A thread of the master, returned once it runs +body+; threads start
    # and children fork one at a time (@forking). A native thread that is
    # still starting up may hold a lock of the C allocator (freeing and
    # allocating as it sets itself up), and a child forked at that moment
    # inherits the lock held, for good: glibc's malloc guards its locks
    # across fork, AddressSanitizer's (GCC 12's, under make test
    # SANITIZE=1) does not. A worker forked while the watch thread of the
    # one before it was starting had every thread it started stuck in that
    # lock once it had said "ready": it never answered a stats question
    # (doc/cluster.md).
    def thread(name, &body)
      started = Queue.new
      @forking.synchronize do
        thread = Thread.new do
          Thread.current.name = name
          Thread.current.report_on_exception = false
          started << true
          body.call
        end
        started.pop
        thread
      end
    end

    # A thread per child: waits for its "ready", then for its exit, and
    # hands that to the supervisor.
    def watch(child)
      thread("kino-watch-#{worker_of(child.slot)}") do
        child.ready = begin
          child.control.gets == "ready\n"
        rescue IOError, SystemCallError
          false
        end
        child.answered_at = now
        changed if child.ready
        _, status = Process.wait2(child.pid)
        @events << [child, status]
      end
    end

    # The supervisor's next event: TTIN/TTOU are handled here, in order
    # with exits; an exit is [slot, error, booting].
    def next_exit
      loop do
        event = @events.pop
        case event
        when :stop then return nil
        when :grow then @membership.synchronize { grow_now }
        when :shrink then @membership.synchronize { shrink_now }
        else
          child, status = event
          ended(child)
          spawn(child.slot) if child.replacing && !@stopping && keep?(child.slot)
          clean = child.retiring && status.success?
          return [child.slot, clean ? nil : WorkerCrash.new(explain(status)), !child.ready]
        end
      end
    end

    # Forget an ended child; keep what it counted.
    def ended(child)
      final = child.lock.synchronize do
        last_frame(child) || child.last
      ensure
        child.control.close
      end
      @lock.synchronize do
        if final
          counters(final).each { |key, n| @retired[key] += n unless GAUGES.include?(key) }
          final[:queue_wait_ms].each { |bound, n| @retired_waits[bound] += n }
          own(final).each { |key, n| @carried[child.slot][key] += n }
        end
        child.ended = true
        @children.delete(child.slot) if @children[child.slot].equal?(child)
        @quarantined.delete(child.pid)
        @idle.broadcast if @children.empty? && @quarantined.empty?
      end
      changed
    end

    # Wake #replace_each and tell on_serving how many children serve.
    def changed
      serving = @lock.synchronize do
        @changed.broadcast
        @children.each_value.count(&:ready)
      end
      @on_serving&.call(serving)
    end

    # #phased_restart's loop: for each slot, TERM its child (which drains)
    # and wait for the child that replaces it to serve.
    def replace_each
      replaced = 0
      @lock.synchronize { @children.keys.sort }.each do |slot|
        old = @lock.synchronize { @children[slot] } or next
        return replaced if @stopping

        old.replacing = true
        retire(old)
        fresh = successor(slot, old)
        return replaced if @stopping
        unless fresh&.ready
          Log.error("main", "phased restart stopped: the new #{describe(slot)} did not boot " \
                            "(#{replaced} replaced; the others keep their code)")
          return replaced
        end
        replaced += 1
        Log.info("main", "phased restart: #{describe(slot)} replaced (pid #{old.pid} -> #{fresh.pid})")
      end
      replaced
    end

    # The child that took +slot+ after +old+, once it serves or has
    # ended (nil when the pool stops first).
    def successor(slot, old)
      @lock.synchronize do
        loop do
          return nil if @stopping

          fresh = @children[slot]
          return fresh if fresh && !fresh.equal?(old) && (fresh.ready || fresh.ended)
          return nil if old.ended && fresh.nil? && slot >= @workers # #shrink took the slot away

          @changed.wait(@lock, 1.0)
        end
      end
    end

    # The stats in the last frame still unread on an ended child's socket
    # (its final report, written as it exits), or nil.
    def last_frame(child)
      last = nil
      deadline = now + 0.2
      while (message = child.inbox.read(deadline))
        last = message[1]
      end
      last
    rescue IOError, SystemCallError
      last
    end

    # Replace only slots the pool still keeps: not one #shrink retired,
    # nor one that #grow has filled again meanwhile.
    def keep?(slot)
      slot < @workers && @lock.synchronize { !@children.key?(slot) }
    end

    def grow_now
      return if @stopping

      @base += 1
      @elastic&.rebase(@base)
      scale_up
    end

    def shrink_now
      return if @stopping || @base <= 1

      @base -= 1
      @elastic&.rebase(@base)
      scale_down
    end

    # One child more, in the next slot (TTIN, the elastic pool).
    def scale_up
      @workers += 1
      spawn(@workers - 1)
    end

    # The highest-numbered child drains and is not replaced (TTOU, the
    # elastic pool).
    def scale_down
      @workers -= 1
      child = @lock.synchronize { @children[@workers] }
      retire(child) if child
    end

    def active_count
      @workers
    end

    def quarantined_count
      @lock.synchronize { @quarantined.size }
    end

    # Every child, serving or in quarantine (with @lock held).
    def everyone
      @children.values + @quarantined.values
    end

    # What the watcher needs: every ready child's stats (#ask), added up;
    # a child that does not answer is +silent+ since its last answer.
    # Children in quarantine past their kill_at are KILLed here.
    def look
      @looked = {}
      queued = in_flight = 0
      seen = {}
      @lock.synchronize { @children.values }.each do |child|
        next unless child.ready && !child.retiring

        @looked[worker_of(child.slot)] = child
        answer = ask(child)
        seen[worker_of(child.slot)] = if answer
                                        queued += answer[:queued]
                                        in_flight += answer[:in_flight]
                                        Quarantine::Seen.new(0.0, 0.0) # its own pool sees to its threads
                                      else
                                        Quarantine::Seen.new(0.0, now - child.answered_at)
                                      end
      end
      View.new(queued + accept_backlog, in_flight, seen)
    end

    # Connections waiting in the kernel's accept queues of the TCP
    # listeners: a child whose workers are all busy leaves new connections
    # there (shared listener), so its own queue does not show them. On
    # Linux TCP_INFO of a listening socket gives that queue's length
    # (tcpi_unacked, at byte 24); elsewhere, and for unix sockets, 0.
    def accept_backlog
      return 0 unless RUBY_PLATFORM.include?("linux") && defined?(Socket::TCP_INFO)

      @listening ||= Native.server_listeners(@server_id).select { |l| l[:kind] == :tcp && l[:fd] >= 0 }.map do |l|
        Socket.for_fd(l[:fd]).tap { |socket| socket.autoclose = false } # the engine's: never closed here
      end
      @listening.sum do |socket|
        socket.getsockopt(Socket::IPPROTO_TCP, Socket::TCP_INFO).data.unpack1("@24L")
      rescue SystemCallError, IOError
        0
      end
    end

    # Put the child of worker +number+ (the one #look saw not answering)
    # in quarantine: KILL it -- it cannot drain, nothing in it runs -- and
    # start a new one in its slot.
    def quarantine(number, _why)
      child = @looked[number]
      return unless child && @lock.synchronize { @children[child.slot].equal?(child) }

      @lock.synchronize do
        @children.delete(child.slot)
        @quarantined[child.pid] = child
      end
      child.quarantined = true
      signal(child, "KILL")
      spawn(child.slot)
    end

    def retire(child)
      child.retiring = true
      signal(child, "TERM")
    end

    def signal(child, name)
      Process.kill(name, child.pid)
    rescue Errno::ESRCH
      nil # already gone; its watcher reports it
    end

    def explain(status)
      if status.signaled?
        "worker process #{status.pid} killed by SIG#{Signal.signame(status.termsig)}"
      else
        "worker process #{status.pid} exited with status #{status.exitstatus}"
      end
    end

    def describe(slot)
      "worker process #{worker_of(slot)}"
    end

    # The child's stats Hash, or nil when it is booting or does not answer
    # in time. A late answer to an earlier question is skipped by SEQ.
    def ask(child)
      return nil unless child.ready

      child.lock.synchronize do
        seq = child.seq += 1
        child.control.write("stats #{seq}\n")
        deadline = now + STATS_TIMEOUT
        loop do
          message = child.inbox.read(deadline) or return nil
          got, stats = message
          next unless got == seq

          child.answered_at = now
          return child.last = stats
        end
      end
    rescue IOError, SystemCallError
      nil
    end

    # The Integer counters of a child's answer (not its thread respawns,
    # which its row reports).
    def counters(answer)
      answer.select { |key, value| value.is_a?(Integer) && key != :respawns }
    end

    # A child's own counters for its row: served, busy_ms, accepted,
    # respawns.
    def own(answer)
      { served: answer[:served], busy_ms: answer[:per_worker].sum { |r| r[:busy_ms] },
        accepted: answer[:accepted], respawns: answer[:respawns] }
    end

    # The per_worker row of +child+: +answer+ now (nil: booting or not
    # answering), +counted+ the answer its counters come from (its last
    # one when it does not answer: its gauges are then that answer's too),
    # +carried+ what ended children of its slot counted.
    def row(child, answer, counted, carried)
      state = answer ? :serving : (child.ready ? :unresponsive : :booting)
      mine = counted ? own(counted) : {}
      counters = ROW_COUNTERS.to_h { |key| [key, carried[key] + mine.fetch(key, 0)] }
      { worker: worker_of(child.slot), pid: child.pid, state: state,
        quarantined: child.quarantined || counted&.fetch(:quarantined, 0).to_i.positive?,
        served: counters[:served],
        in_flight: counted ? counted[:in_flight] : 0, busy_ms: counters[:busy_ms], accepted: counters[:accepted],
        connections: counted ? counted[:connections] : 0, respawns: counters[:respawns],
        lane: counted ? counted[:per_worker].sum { |r| r[:lane].to_i } : 0 }
    end

    # See FORK_GC.
    def prepare_heap
      return if ProcessPool.fork_gc == :none

      GC.start
      GC.compact if ProcessPool.fork_gc == :compact && GC.respond_to?(:compact)
    rescue NotImplementedError
      nil
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end
end
