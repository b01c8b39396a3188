# frozen_string_literal: true

require "rbconfig"

module Bench
  # The other servers' gems live in bench/vendor/gems, installed on demand
  # with `gem install --install-dir`, never into the system.
  module Gems
    DIR = File.join(BENCH_DIR, "vendor", "gems")

    # Environment for a server run from bench/vendor/gems.
    def self.env
      { "GEM_HOME" => DIR, "GEM_PATH" => DIR, "BUNDLE_GEMFILE" => nil }
    end

    # The path of an installed gem executable.
    def self.bin(name)
      File.join(DIR, "bin", name)
    end

    # Is a version of gem +name+ satisfying +requirement+ installed?
    def self.installed?(name, requirement)
      requirement = Gem::Requirement.new(requirement)
      Dir.glob(File.join(DIR, "specifications", "#{name}-*.gemspec")).any? do |path|
        version = File.basename(path, ".gemspec").delete_prefix("#{name}-")[/\A\d[\w.]*/]
        version && requirement.satisfied_by?(Gem::Version.new(version))
      end
    end

    # Install each [name, requirement] of +gems+ that is missing; the output
    # goes to +log_dir+/gem-NAME.log. Returns nil, or why it failed.
    def self.ensure_installed(gems, log_dir)
      gems.each do |name, requirement|
        next if installed?(name, requirement)

        error = install(name, requirement, File.join(log_dir, "gem-#{name}.log"))
        return error if error
      end
      nil
    end

    # `gem install --no-document --install-dir bench/vendor/gems NAME`, run
    # by this Ruby's RubyGems. Returns nil, or why it failed.
    def self.install(name, requirement, log_path)
      $stderr.puts "bench: installing gem #{name} (#{requirement}) into #{DIR} ..."
      argv = [RbConfig.ruby, "-rrubygems", "-rrubygems/gem_runner", "-e", "Gem::GemRunner.new.run(ARGV.clone)",
              "install", "--no-document", "--install-dir", DIR, name, "--version", requirement]
      ok = system(*argv, in: File::NULL, %i[out err] => [log_path, "w"])
      return nil if ok && installed?(name, requirement)

      last = File.readlines(log_path, chomp: true).reject(&:empty?).last(2).join(" / ")
      "gem install #{name} failed: #{last} (see #{log_path})"
    end
  end
end
