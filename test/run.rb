# frozen_string_literal: true

# Runs the Ruby suites in one process: every test/*_test.rb and
# test/pure/*_test.rb (the suites make test-ruby4 also runs on Ruby 4.0), or the files
# named in TESTS (make test-ruby TESTS="test/http_test.rb test/ractor_test.rb").
files = ENV["TESTS"].to_s.split.map { |f| File.expand_path(f) }
files = Dir[File.join(__dir__, "{,pure/}*_test.rb")].sort if files.empty?
files.each { |file| require file }
