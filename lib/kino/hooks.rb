# frozen_string_literal: true

module Kino
  # Calls lifecycle hooks. A hook that raises is reported on stderr and
  # never stops the server or a worker.
  module Hooks
    def self.call(hook, name, *args)
      hook&.call(*args)
    rescue StandardError => e
      Log.error(Log.source, "#{name} hook raised #{e.class}: #{e.message}")
    end
  end
end
