# frozen_string_literal: true

module Kino
  # The base of Kino's own errors. Defined here as well as by the native
  # extension (which finds this class and reuses it), so the pure-Ruby
  # parts -- options, config file, CLI, Check -- load without it.
  class Error < StandardError; end

  # Defined by the native extension:
  #   Kino::ResponseError      < Kino::Error    (the app's response cannot be sent)
  #   Kino::ClientDisconnected < IOError        (the client went away)
  #   Kino::InputError         < IOError        (rack.input refused the body:
  #                                              malformed, too large, too slow)

  # The app cannot run in :ractor mode (see Kino::Check).
  class UnshareableAppError < Error; end
end
