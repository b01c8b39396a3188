# frozen_string_literal: true

module Bench
  # Picks ports. Every server start gets a port that no socket uses in any
  # state. Ports still in TIME_WAIT from the previous server would make a
  # server that does not set SO_REUSEADDR (Agoo) fail to bind.
  module Ports
    # The first port from +from+ upward that no TCP socket uses locally.
    def self.unused_from(from)
      used = local_ports
      port = from
      port += 1 while used.include?(port)
      raise "no unused port from #{from}" if port > 65_535

      port
    end

    # The local ports of every TCP socket, in any state (/proc/net/tcp*).
    def self.local_ports
      %w[/proc/net/tcp /proc/net/tcp6].flat_map do |path|
        File.exist?(path) ? File.readlines(path).drop(1).map { |line| line.split[1].split(":").last.to_i(16) } : []
      end.uniq
    end
  end
end
