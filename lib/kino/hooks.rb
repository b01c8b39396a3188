# frozen_string_literal: true

module Kino
  # Calls lifecycle hooks. A hook that raises is reported on stderr and
  # never stops the server or a worker.
  module Hooks
    def self.call(hook, name, *args)
      hook&.call(*args)
    rescue StandardError => e
      $stderr.write("kino: #{name} hook raised #{e.class}: #{e.message}\n")
    end
  end
end
