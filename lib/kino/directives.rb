# frozen_string_literal: true

require_relative "options"

module Kino
  # The directives of a config file (kino.rb): one per server option in
  # Kino::Options::DEFAULTS, plus +environment+ and +rackup+, which the CLI
  # uses. Each has its documentation here, shared by `kino --help`,
  # `kino --init` and (checked by a test) the manual page.
  #
  # Pure Ruby without the native extension, so `kino --help` stays instant.
  module Directives
    # +kind+ says how a String is read (CLI flags, -O options, ENV values):
    # :integer, :seconds, :mode, :boolean, :string, :hook, :path, :log (a
    # path, or "true"/"false") or :symbol.
    # +default+ is the default as people read it (nil: the inspected value
    # from Options::DEFAULTS). +example+ is a valid directive line.
    Doc = Struct.new(:name, :group, :kind, :summary, :default, :why, :example, keyword_init: true)

    # The sections of the sample config, in order.
    GROUPS = ["Listening", "Concurrency", "Limits and timeouts", "Lifecycle", "Operations", "Logging", "Application"].freeze

    # Not server options: the CLI reads them (the Rack handler ignores them).
    CLI_ONLY = %i[environment rackup].freeze

    DOCS = [
      Doc.new(name: :bind, group: "Listening", kind: :string,
              summary: "where to listen: an address or host name (on port), or URLs tcp://HOST:PORT, " \
                       "unix:///PATH, ssl://HOST:PORT; an Array, or repeat the directive, for several",
              why: 'Use "0.0.0.0" (every IPv4 interface) or "::" (IPv6) to accept connections ' \
                   "from other machines (a container); unix:///run/app.sock behind nginx on the same " \
                   "host. A URL may end in ?proxy_protocol=1.",
              example: 'bind "127.0.0.1"'),
      Doc.new(name: :port, group: "Listening", kind: :integer, default: "9292",
              summary: "TCP port to listen on; 0 picks a free one (Kino::Server.new defaults to 0)",
              why: "Run several apps on one machine, or listen where your proxy or platform " \
                   "expects (many set PORT: port ENV.fetch(\"PORT\", 9292)).",
              example: "port 9292"),
      Doc.new(name: :proxy_protocol, group: "Listening", kind: :boolean,
              summary: "require a PROXY protocol header (v1 or v2) on every connection; a URL's " \
                       "?proxy_protocol=1 or =0 decides for its listener",
              why: "Behind HAProxy (send-proxy) or a cloud load balancer that sends it, REMOTE_ADDR " \
                   "is then the client's address. Only where the proxy always sends it: a " \
                   "connection without it is closed.",
              example: "proxy_protocol false"),
      Doc.new(name: :tls, group: "Listening", kind: :tls, default: "off (nil): plain HTTP",
              summary: "serve HTTPS: {cert:, key:} (file paths or PEM; optional ca:, verify: :peer, " \
                       "min_version: \"1.3\", ciphers:)",
              why: "Terminate TLS in Kino when no proxy does it for you. cert may hold the chain " \
                   "after the certificate; ca: with verify: :peer requires client certificates " \
                   "(the app sees SSL_CLIENT_CERT). min_version is \"1.2\" unless set. See doc/tls.md.",
              example: 'tls cert: "config/ssl/cert.pem", key: "config/ssl/key.pem"'),
      Doc.new(name: :http2, group: "Listening", kind: :boolean, default: "true",
              summary: "serve HTTP/2 too: h2 by ALPN over TLS, h2c by prior knowledge on plain " \
                       "listeners, next to HTTP/1.1 on the same port",
              why: "Say false to speak HTTP/1.1 only (ALPN then offers http/1.1 alone, and the " \
                   "HTTP/2 preface gets 505). See doc/http2.md.",
              example: "http2 false"),
      Doc.new(name: :mode, group: "Concurrency", kind: :mode,
              summary: ":auto, :ractor, :threaded or :cluster (see MODES in man kino)",
              why: "Say :cluster for apps that are not Ractor-shareable (Rails, Sinatra) on " \
                   "several cores: one process per worker, as Puma's workers. Say :threaded for " \
                   "one process. Say :ractor to fail at boot rather than fall back to threads. " \
                   ":auto never picks :cluster.",
              example: "mode :auto"),
      Doc.new(name: :workers, group: "Concurrency", kind: :integer,
              default: "the CPUs this process may use",
              summary: "ractors (:ractor mode), thread groups (:threaded) or processes (:cluster)",
              why: "Lower it when other processes share the machine. In :threaded mode " \
                   "workers x threads requests run at once, all in this one process; " \
                   "in :cluster mode each worker is a process with its own GVL.",
              example: "workers 4"),
      Doc.new(name: :preload, group: "Concurrency", kind: :boolean,
              summary: ":cluster: load the app once in the master and fork the workers from it",
              why: "Keep it: the workers share the loaded app's memory copy-on-write. Say false " \
                   "to load config.ru in each worker process instead (with `kino`; an app " \
                   "built before the server, as under `rails s`, is always preloaded): then " \
                   "kill -URG is a phased restart that loads new code one worker at a time.",
              example: "preload true"),
      Doc.new(name: :max_workers, group: "Concurrency", kind: :integer, default: "off (nil)",
              summary: "elastic pool: while requests stay queued, start one more worker at a time, up to " \
                       "this many (at least workers)",
              why: "Absorb bursts without paying for idle workers the rest of the time; the extra " \
                   "ones leave after scale_down_after idle seconds. In :cluster mode they are processes.",
              example: "max_workers 8"),
      Doc.new(name: :scale_down_after, group: "Concurrency", kind: :seconds,
              summary: "elastic pool: seconds without a backlog before the extra workers leave, one at a time",
              why: "Raise it when bursts come back often and booting a worker is expensive (:cluster, " \
                   "a large app without preload).",
              example: "scale_down_after 30.0"),
      Doc.new(name: :threads, group: "Concurrency", kind: :integer,
              default: "1 in :ractor mode, 3 in :threaded and :cluster modes",
              summary: "threads per worker (Puma's `threads MIN, MAX` is accepted: Kino uses MAX)",
              why: "Raise it for apps that wait on databases or HTTP APIs; keep " \
                   "workers x threads within your database pool.",
              example: "threads 3"),
      Doc.new(name: :io_threads, group: "Concurrency", kind: :integer,
              summary: "C I/O threads that own the sockets and parse HTTP",
              why: "Raise it (2 to 4) only when one I/O thread is saturated by very many " \
                   "small requests or connections, or by TLS handshakes (they run on I/O threads).",
              example: "io_threads 1"),
      Doc.new(name: :lanes, group: "Concurrency", kind: :boolean,
              summary: "give each worker thread a lane: a queue of up to 4 requests that the I/O thread " \
                       "fills while that thread is busy, instead of waking a sleeping one; idle threads " \
                       "steal from the others' lanes",
              why: "Fewer wake-ups per request when workers keep up with the load (doc/dispatch.md " \
                   "has the figures). A request waits behind the one its thread is serving, so " \
                   "leave it off for apps whose requests take long; a lane whose thread stalls " \
                   "for 2 ms goes back to the shared queue.",
              example: "lanes false"),
      Doc.new(name: :batch, group: "Concurrency", kind: :integer,
              summary: "requests a worker thread takes from the queue at once (1 to 64); it serves " \
                       "them one after the other",
              why: "Fewer visits to the queue's lock under a flood of tiny requests. A thread " \
                   "with nothing to do takes what another has not begun of its batch, so none " \
                   "waits behind a stuck request while a thread is free; it measured no faster, " \
                   "so keep 1 unless the benchmark says otherwise (doc/dispatch.md).",
              example: "batch 1"),
      Doc.new(name: :queue_depth, group: "Limits and timeouts", kind: :integer,
              summary: "parsed requests that may wait for a worker",
              why: "Larger absorbs bursts; smaller sheds load (503) sooner.",
              example: "queue_depth 1024"),
      Doc.new(name: :queue_timeout, group: "Limits and timeouts", kind: :seconds,
              summary: "seconds a request waits for room in a full queue before 503",
              why: "Lower it to fail fast under overload so a load balancer retries elsewhere.",
              example: "queue_timeout 5.0"),
      Doc.new(name: :request_timeout, group: "Limits and timeouts", kind: :seconds, default: "off (nil)",
              summary: "seconds before the client gets 504; the handler keeps running",
              why: "Answer slow requests before your proxy gives up on them.",
              example: "request_timeout 30"),
      Doc.new(name: :quarantine_timeout, group: "Limits and timeouts", kind: :seconds, default: "off (nil)",
              summary: "seconds one request may hold a worker before the worker is quarantined and a " \
                       "new one serves in its place",
              why: "Keep serving when a handler hangs (a lock, a call without a timeout). The stuck " \
                   "worker is not killed: it leaves once its request ends. In :cluster mode each process " \
                   "does this for its threads, and the master KILLs and replaces a process that stops " \
                   "answering it (its GVL held by a C call). See doc/pool.md.",
              example: "quarantine_timeout 60"),
      Doc.new(name: :quarantine_max, group: "Limits and timeouts", kind: :integer, default: "workers (nil)",
              summary: "workers in quarantine at once; past it a stuck worker is only reported (0: never replace)",
              why: "Bound the threads, ractors or processes that stuck requests may pin.",
              example: "quarantine_max 4"),
      Doc.new(name: :max_body_size, group: "Limits and timeouts", kind: :integer, default: "52428800 (50 MiB)",
              summary: "bytes of request body; a larger declared body gets 413 before the app runs (nil: no limit)",
              why: "Raise it for uploads; lower it for APIs that take small JSON bodies.",
              example: "max_body_size 50 * 1024 * 1024"),
      Doc.new(name: :body_buffer, group: "Limits and timeouts", kind: :integer, default: "1048576 (1 MiB)",
              summary: "request-body bytes the I/O thread gathers before the app runs; larger bodies " \
                       "are streamed to it (0: stream every body)",
              why: "Gathering keeps clients that send bodies slowly from holding workers. Set 0 only " \
                   "for apps that answer while the body still arrives (full-duplex streaming).",
              example: "body_buffer 1024 * 1024"),
      Doc.new(name: :header_timeout, group: "Limits and timeouts", kind: :seconds,
              summary: "seconds for the whole request head to arrive (else 408)",
              why: "Lower it to shed slow-header (slowloris) clients sooner.",
              example: "header_timeout 15.0"),
      Doc.new(name: :keepalive_timeout, group: "Limits and timeouts", kind: :seconds,
              summary: "seconds an idle keep-alive connection stays open",
              why: "Keep it above your load balancer's idle timeout (60 s on AWS ALB) " \
                   "so Kino never closes a connection the balancer is about to reuse.",
              example: "keepalive_timeout 65.0"),
      Doc.new(name: :body_timeout, group: "Limits and timeouts", kind: :seconds,
              summary: "longest pause while reading a request body or writing a response",
              why: "Raise it for clients on slow links that upload or download large bodies.",
              example: "body_timeout 30.0"),
      Doc.new(name: :max_connections, group: "Limits and timeouts", kind: :integer,
              default: "80% of the open-file limit",
              summary: "open connections at most; accepting pauses at the cap",
              why: "Cap memory and file descriptors when many clients keep connections open.",
              example: "max_connections 10_000"),
      Doc.new(name: :shutdown_timeout, group: "Lifecycle", kind: :seconds,
              summary: "seconds a graceful stop (INT, TERM) waits for requests in flight",
              why: "Match your supervisor's grace period (Kubernetes: " \
                   "terminationGracePeriodSeconds), minus a few seconds.",
              example: "shutdown_timeout 30.0"),
      Doc.new(name: :pidfile, group: "Lifecycle", kind: :path, default: "none (nil)",
              summary: "file holding the server's pid; refused while a live process owns it, removed at exit",
              why: "Let scripts and init systems find (and signal) the server.",
              example: 'pidfile "tmp/pids/kino.pid"'),
      Doc.new(name: :on_error, group: "Lifecycle", kind: :hook, default: "none (nil)",
              summary: "hook(error, env), called after an app error is logged",
              why: "Report errors to your tracker. In :ractor mode it must be shareable: " \
                   "a module with self.call, or Kino.shareable_app { ->(error, env) { ... } }.",
              example: "on_error do |error, env|\n  # report error (env[\"PATH_INFO\"] says where)\nend"),
      Doc.new(name: :after_boot, group: "Lifecycle", kind: :hook, default: "none (nil)",
              summary: "hook(), called once the workers are up (in the main thread)",
              why: "Tell a supervisor you are ready, or warm caches.",
              example: "after_boot do\n  # the server is listening\nend"),
      Doc.new(name: :on_worker_boot, group: "Lifecycle", kind: :hook, default: "none (nil)",
              summary: "hook(worker), called in each worker (each of its threads) before it serves",
              why: "Open per-worker resources. In :threaded and :ractor modes nothing forks: " \
                   "connections opened at boot stay valid. In :cluster mode it runs once in each " \
                   "worker process after the fork: reconnect there. In :ractor mode it must be shareable.",
              example: "on_worker_boot do |worker|\n  # worker is its number, from 0\nend"),
      Doc.new(name: :on_worker_exit, group: "Lifecycle", kind: :hook, default: "none (nil)",
              summary: "hook(worker, error), called in the main thread when a worker ends",
              why: "Count or report crashed workers (error is nil on a normal stop). In " \
                   ":cluster mode it runs in the master.",
              example: "on_worker_exit do |worker, error|\n  # error: why it ended, or nil\nend"),
      Doc.new(name: :before_fork, group: "Lifecycle", kind: :hook, default: "none (nil)",
              summary: "hook(), called in the :cluster master before each worker process is forked",
              why: "Close what must not be shared across a fork (database connections opened " \
                   "while loading the app).",
              example: "before_fork do\n  # e.g. ActiveRecord::Base.connection_pool.disconnect!\nend"),
      Doc.new(name: :control_bind, group: "Operations", kind: :string, default: "off (nil)",
              summary: "where the control plane listens (HOST:PORT or unix:///PATH): GET /live, /ready, " \
                       "/stats (JSON), /metrics (Prometheus)",
              why: "Point Kubernetes probes at /live and /ready (503 while booting or draining; in " \
                   ":cluster 200 while a worker process serves) and Prometheus at /metrics (in :cluster " \
                   "the master adds the workers up); its own thread answers even when every worker is " \
                   "stuck. Keep it on a private address or set control_token.",
              example: 'control_bind "127.0.0.1:9293"'),
      Doc.new(name: :control_token, group: "Operations", kind: :string, default: "none (nil)",
              summary: "bearer token that /stats and /metrics require (Authorization: Bearer TOKEN); " \
                       "the probes never need it",
              why: "Keep counters private when the control plane is reachable by others, e.g. " \
                   'control_token ENV["KINO_CONTROL_TOKEN"].',
              example: 'control_token ENV.fetch("KINO_CONTROL_TOKEN", nil)'),
      Doc.new(name: :log_requests, group: "Logging", kind: :log, default: "off (nil)",
              summary: "access log, one line per request: true writes to stdout, a path appends to that file",
              why: "See who asked for what, and every 4xx/5xx Kino answered itself. Lines are " \
                   "written by a C thread, never on the request path (man kino: LOGGING); " \
                   "kill -HUP reopens the file after logrotate.",
              example: 'log_requests "log/access.log"'),
      Doc.new(name: :log_format, group: "Logging", kind: :symbol,
              summary: ":text (one line like a common log, tinted by status on a terminal) or :json (one object per line)",
              why: "Say :json when a log collector parses the lines (Loki, Elasticsearch, Datadog).",
              example: "log_format :text"),
      Doc.new(name: :environment, group: "Application", kind: :string, default: "RACK_ENV as set (nil)",
              summary: "sets RACK_ENV, when it is unset, before the app is loaded",
              why: "Run in production without exporting RACK_ENV.",
              example: 'environment "production"'),
      Doc.new(name: :rackup, group: "Application", kind: :path, default: '"config.ru"',
              summary: "the rackup file to serve (a file named on the command line wins)",
              why: "Serve an app whose rackup file is not ./config.ru.",
              example: 'rackup "config.ru"')
    ].to_h { |doc| [doc.name, doc.freeze] }.freeze

    # Every directive name: the server options (from Options::DEFAULTS, so
    # a new option is a directive at once) and then the CLI-only ones.
    def self.names
      Options::DEFAULTS.keys + CLI_ONLY
    end

    # The documentation of +name+; a placeholder for an option nobody has
    # documented yet (a test fails until someone does).
    def self.doc(name)
      DOCS.fetch(name) do
        Doc.new(name: name, group: "Other", kind: :string, summary: "(undocumented)", why: "",
                example: "#{name} #{Options::DEFAULTS[name].inspect}")
      end
    end

    # The default as the manual, --help and --init print it.
    def self.default_text(name)
      doc(name).default || Options::DEFAULTS[name].inspect
    end

    # +value+ as the directive +name+ takes it: a String of digits is read
    # as a number where a number is expected (flags, -O options, ENV), a
    # String mode as a Symbol. Anything else is returned unchanged, for
    # validation to accept or refuse.
    def self.coerce(name, value)
      return value unless value.is_a?(String)

      case doc(name).kind
      when :integer
        value = value.split(":").last.to_s if name == :threads # Puma's MIN:MAX
        value.match?(/\A\s*\d+\s*\z/) ? Integer(value, 10) : value
      when :seconds then value.match?(/\A\s*\d+(\.\d+)?\s*\z/) ? Float(value) : value
      when :mode, :symbol then value.empty? ? value : value.delete_prefix(":").to_sym
      when :boolean then { "true" => true, "1" => true, "false" => false, "0" => false }.fetch(value.strip.downcase, value)
      when :log then { "true" => true, "false" => false }.fetch(value.strip.downcase, value)
      else value
      end
    end
  end
end
