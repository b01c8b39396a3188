# frozen_string_literal: true

require "etc"

module Kino
  # CPUs this process may use: the scheduler affinity mask (Etc.nprocessors
  # honours it on Linux) capped by a cgroup CPU quota, rounded up, at least 1.
  # This is the default number of workers.
  def self.available_parallelism
    cpus = Etc.nprocessors
    quota = cgroup_cpu_quota
    cpus = [cpus, quota.ceil].min if quota&.positive?
    [cpus, 1].max
  end

  # The cgroup (v2, else v1) CPU quota in CPUs, or nil when unlimited.
  def self.cgroup_cpu_quota
    if File.readable?("/sys/fs/cgroup/cpu.max")
      quota, period = File.read("/sys/fs/cgroup/cpu.max").split
      return nil if quota == "max"
      return quota.to_f / period.to_f
    end
    quota_file = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    period_file = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"
    return nil unless File.readable?(quota_file) && File.readable?(period_file)
    quota = File.read(quota_file).to_i
    quota.positive? ? quota.to_f / File.read(period_file).to_f : nil
  rescue SystemCallError, ZeroDivisionError
    nil
  end
  private_class_method :cgroup_cpu_quota
end
