# frozen_string_literal: true

# The pure-Ruby suites (test/pure): Kino's parts that need no native
# extension -- option validation, the config file DSL, the CLI's argument
# handling, Kino.shareable_app and Kino::Check -- loaded without it, so
# they run on every Ruby: in `make test` on the machine's Ruby, and on
# Ruby 4.0 through ruby.wasm (`make test-ruby4`, test/ruby4/suite.rb).
require "minitest"
require "minitest/autorun" unless defined?(KINO_RUBY4) # suite.rb runs them itself
lib = File.expand_path("../../lib", __dir__)
$LOAD_PATH.unshift(lib) unless $LOAD_PATH.include?(lib)
require "kino/version"
require "kino/errors"
require "kino/options"
require "kino/directives"
require "kino/configuration"
require "kino/check"
require "kino/shareable"
require "kino/cli"
require "stringio"
