# frozen_string_literal: true

module Bench
  # Memory of a server's whole process tree (the root process plus all its
  # descendants, found through the parent pids in /proc/*/stat).
  module ProcessTree
    Memory = Struct.new(:rss_mib, :pss_mib, :processes, keyword_init: true)

    # The pids of +root+ and all its descendants.
    def self.pids(root)
      children = children_by_parent
      tree = [root]
      tree.each { |pid| tree.concat(children.fetch(pid, [])) }
      tree.uniq
    end

    # parent pid => [child pids], for every process now in /proc.
    def self.children_by_parent
      children = {}
      Dir.glob("/proc/[0-9]*/stat").each do |path|
        ppid = File.read(path).rpartition(")").last.split[1].to_i # after "pid (comm) state"
        (children[ppid] ||= []) << File.basename(File.dirname(path)).to_i
      rescue SystemCallError
        next # the process ended meanwhile
      end
      children
    end

    # Summed RSS and PSS (MiB) of the tree under +root+, from
    # /proc/PID/smaps_rollup (PSS is nil when that file is unavailable).
    def self.memory(root)
      rss_kib = 0
      pss_kib = 0
      tree = pids(root)
      tree.each do |pid|
        rss, pss = process_kib(pid)
        rss_kib += rss
        pss_kib = pss && pss_kib && pss_kib + pss
      end
      Memory.new(rss_mib: rss_kib / 1024.0, pss_mib: pss_kib && pss_kib / 1024.0, processes: tree.size)
    end

    # [RSS, PSS] in KiB of one process; PSS nil without smaps_rollup
    # (kernels before 4.14), [0, 0] if the process is gone.
    def self.process_kib(pid)
      rollup = File.read("/proc/#{pid}/smaps_rollup")
      [rollup[/^Rss:\s+(\d+) kB/, 1].to_i, rollup[/^Pss:\s+(\d+) kB/, 1].to_i]
    rescue SystemCallError
      return [0, 0] unless File.exist?("/proc/#{pid}/status")

      [File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+) kB/, 1].to_i, nil]
    rescue SystemCallError
      [0, 0]
    end
  end
end
