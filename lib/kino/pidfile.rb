# frozen_string_literal: true

module Kino
  # A pid file this process claims exclusively: refused while a live
  # process owns it, replaced when stale, removed at exit only while it
  # still names this process.
  class Pidfile
    attr_reader :path

    def initialize(path)
      @path = File.expand_path(path)
    end

    # Write our pid, or raise Kino::Error naming the owner or the problem.
    # A stale file -- or a symlink, which is removed, never followed -- is
    # replaced; a file that does not hold a pid is left alone. With
    # +restarted+ (a hot restart: same pid, the file written before the
    # exec), a file naming this process is kept.
    def claim!(restarted: false)
      2.times do
        File.open(@path, File::WRONLY | File::CREAT | File::EXCL, 0o644) { |f| f.write("#{Process.pid}\n") }
        return self
      rescue Errno::EEXIST
        return self if restarted && !File.symlink?(@path) && owner == Process.pid
        remove_stale
      end
      raise Error, "cannot claim pidfile #{@path}: it keeps reappearing"
    rescue SystemCallError => e
      raise Error, "cannot write pidfile #{@path}: #{e.message}"
    end

    # Remove the file if it still names this process.
    def release
      File.unlink(@path) if !File.symlink?(@path) && File.file?(@path) && owner == Process.pid
    rescue SystemCallError
      nil
    end

    private

    def remove_stale
      unless File.symlink?(@path)
        pid = owner or raise Error, "pidfile #{@path} exists and does not hold a pid; not touching it"
        raise Error, "pidfile #{@path} is held by running process #{pid}" if alive?(pid)
      end
      File.unlink(@path)
    rescue Errno::ENOENT
      nil # someone removed it in between: claim again
    end

    # The pid the file names, or nil.
    def owner
      text = File.read(@path, 32)
      text =~ /\A\s*(\d+)\s*\z/ ? Regexp.last_match(1).to_i : nil
    end

    def alive?(pid)
      Process.kill(0, pid)
      true
    rescue Errno::ESRCH
      false
    rescue Errno::EPERM
      true # alive, owned by someone else
    end
  end
end
