# frozen_string_literal: true

module Kino
  # The slots of a pool whose workers run in this process, on this
  # process's engine: ThreadPool (a worker is +threads+ threads, one slot
  # each) and RactorPool (a worker is a ractor, one slot). Slots are never
  # reused by another worker; each knows its worker's number.
  #
  # Quarantine and the elastic pool work on whole workers: retiring one
  # (Native.server_retire) makes each of its serve loops leave once its
  # current request is done -- at once when idle. Nothing is killed: a
  # thread or a ractor cannot be stopped safely in the middle of app code.
  # A worker started in a quarantined one's place gets the same number, on
  # new slots; the engine's rows tell the two apart by their quarantined
  # flag.
  #
  # The including pool keeps @live (slot => its thread or ractor, until it
  # has ended), calls #setup_slots in its constructor, and provides
  # #slots_per_worker and #spawn.
  module Slots
    private

    def setup_slots
      @live = {}
      @number = {}      # slot => worker number
      @retired = {}     # slot => true: its worker was quarantined or retired
      @quarantined = [] # the slots of each worker in quarantine
      @next_slot = 0
    end

    def slots
      (0...@workers).flat_map { |i| new_slots(@first_worker + i) }
    end

    # New slots (#slots_per_worker of them) for worker +number+.
    def new_slots(number)
      Array.new(slots_per_worker) do
        slot = @next_slot
        @next_slot += 1
        @number[slot] = number
        slot
      end
    end

    def worker_of(slot)
      @number.fetch(slot)
    end

    def keep?(slot)
      !@retired[slot]
    end

    def forget(slot)
      return unless @retired[slot] && !@live.key?(slot)

      @retired.delete(slot)
      @number.delete(slot)
    end

    # The serving workers' numbers, lowest first.
    def active
      @number.reject { |slot, _| @retired[slot] }.values.uniq.sort
    end

    def active_count
      active.size
    end

    # Workers in quarantine with a serve loop still running.
    def quarantined_count
      @quarantined.select! { |slots| slots.any? { |slot| @live.key?(slot) } }
      @quarantined.size
    end

    # Stop worker +number+ taking requests; returns its slots.
    def retire(number, quarantine)
      slots = @number.select { |slot, n| n == number && !@retired[slot] }.keys
      Native.server_retire(@server_id, number, quarantine)
      slots.each { |slot| @retired[slot] = true }
      slots
    end

    def quarantine(number, _why)
      @quarantined << retire(number, true)
      new_slots(number).each { |slot| spawn(slot) }
    end

    def scale_up
      number = (@first_worker..).find { |n| !active.include?(n) }
      new_slots(number).each { |slot| spawn(slot) }
    end

    def scale_down
      retire(active.last, false)
    end

    # What the watcher needs, from the engine's rows: the queue, and each
    # serving worker's longest-held request (loops retired or in
    # quarantine are left out).
    def look
      live = Native.server_stats(@server_id)
      rows = live[:threads_detail].reject { |row| row[:retiring] }
      seen = rows.group_by { |row| row[:worker] }.transform_values do |list|
        Quarantine::Seen.new(list.map { |row| row[:request_ms] }.max / 1000.0, 0.0)
      end
      Pool::View.new(live[:queued], rows.sum { |row| row[:in_flight] }, seen)
    end
  end
end
