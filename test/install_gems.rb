# frozen_string_literal: true

# Installs the gems the test suite needs (rack for Rack::Lint, minitest;
# websocket-driver, faye-websocket with eventmachine, and nio4r for the
# hijack suite; sinatra and roda, the frameworks mode :auto must serve) into
# a local folder, only when the Ruby running this lacks them. eventmachine
# compiles C++: about 45 s on the 2-core machine.
# Usage: ruby test/install_gems.rb DIR
require "rubygems"
require "rubygems/gem_runner"

dir = File.expand_path(ARGV.fetch(0))
Gem.paths = { "GEM_HOME" => Gem.dir, "GEM_PATH" => [dir, *Gem.path].join(File::PATH_SEPARATOR) }
wanted = { "rack" => "~> 3.0", "minitest" => ">= 5.15", "rackup" => ">= 2.1",
           "websocket-driver" => "~> 0.7", "faye-websocket" => "~> 0.11", "nio4r" => "~> 2.5",
           "sinatra" => "~> 4.0", "roda" => "~> 3.0" }

wanted.each do |name, requirement|
  next if Gem::Specification.find_all_by_name(name, requirement).any?

  warn "installing #{name} (#{requirement}) into #{dir}"
  begin
    Gem::GemRunner.new.run(["install", "--no-document", "--install-dir", dir, name, "-v", requirement])
  rescue Gem::SystemExitException => e
    raise unless e.exit_code.zero?
  end
end
