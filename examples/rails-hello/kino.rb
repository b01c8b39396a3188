# frozen_string_literal: true

# Kino for this Rails app: Puma's cluster shape. `workers` forked
# processes, each with `threads` threads; the app is loaded once and the
# workers are forked from it. Threads match the database pool
# (config/database.yml). `kino -m threaded` (one process) overrides it.
mode :cluster
workers Integer(ENV.fetch("WEB_CONCURRENCY", 2))
threads Integer(ENV.fetch("RAILS_MAX_THREADS", 5))
port ENV.fetch("PORT", 3000)
