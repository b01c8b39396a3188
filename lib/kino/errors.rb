# frozen_string_literal: true

module Kino
  # Defined by the native extension:
  #   Kino::Error              < StandardError  (base of Kino's own errors)
  #   Kino::ResponseError      < Kino::Error    (the app's response cannot be sent)
  #   Kino::ClientDisconnected < IOError        (the client went away)
  #   Kino::InputError         < IOError        (rack.input refused the body:
  #                                              malformed, too large, too slow)

  # The app cannot run in :ractor mode (see Kino::Check).
  class UnshareableAppError < Error; end
end
