# frozen_string_literal: true

require_relative "errors"
module Kino
  # A Ractor-shareable app from a block, on every Ruby:
  #
  #   APP = Kino.shareable_app { ->(env) { [200, {}, ["hi"]] } }   # everywhere
  #   APP = Kino.shareable_app { |env| [200, {}, ["hi"]] }          # Ruby 4.0, or
  #                                                                # inside a module
  #
  # A block without parameters is a definer: it runs with nil as self and
  # returns the app (usually a lambda), which is then made shareable. A
  # lambda built there has nil as self, which is what Ruby 3.x needs.
  #
  # A block with parameters is the app itself. Ruby 4.0 makes it shareable
  # with Ractor.shareable_lambda (self replaced by nil). Ruby 3.x cannot
  # replace a block's self, so there the block works only when its self is
  # already shareable: written inside a module or class body.
  #
  # Captured local variables must hold shareable values (frozen strings,
  # numbers, symbols, deep-frozen structures); Kino never freezes them for
  # you. Raises UnshareableAppError saying what to change.
  def self.shareable_app(&block)
    raise ArgumentError, "Kino.shareable_app needs a block" unless block

    app = block.arity.zero? ? nil.instance_exec(&block) : block
    raise ArgumentError, "the block must return a Rack app (something that responds to call)" unless app.respond_to?(:call)

    share(app, block)
  end

  # Make +app+ shareable, or explain why it cannot be.
  def self.share(app, block)
    return app if Ractor.shareable?(app)
    return Ractor.shareable_lambda(self: nil, &app) if app.equal?(block) && Ractor.respond_to?(:shareable_lambda)

    Ractor.make_shareable(app)
  rescue Ractor::Error, ArgumentError, TypeError => e
    raise UnshareableAppError, shareable_app_advice(e)
  end

  def self.shareable_app_advice(error)
    "cannot make the app shareable: #{error.message}. " \
      "Captured variables must hold shareable values (freeze them, or use Ractor.make_shareable). " \
      "On Ruby 3.x a block's self cannot be replaced: write Kino.shareable_app { ->(env) { ... } } " \
      "(a block that returns the app), or call Kino.shareable_app inside a module body."
  end

  private_class_method :share, :shareable_app_advice
end
