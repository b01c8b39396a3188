# frozen_string_literal: true

# make test-ruby4: the pure-Ruby suites (test/pure) on ruby.wasm's Ruby 4.0,
# without the native extension. Run by test/ruby4/run.js, which mounts the
# checkout at /kino; ARGV: the minitest directory to load, then minitest's
# own options. Returns the exit status.
KINO_RUBY4 = true
puts "test-ruby4: #{RUBY_DESCRIPTION}"
ENV["MT_CPU"] = "0"         # ruby.wasm has no threads: no parallel executor
ENV["MT_NO_PLUGINS"] = "1"  # nor a full RubyGems to find plugins with
$LOAD_PATH.unshift(ARGV.shift)
require_relative "../pure/helper"
Dir[File.join(__dir__, "../pure/*_test.rb")].sort.each { |file| require file }
Minitest.run(ARGV) ? 0 : 1
