# frozen_string_literal: true

require_relative "boot"

require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "action_view/railtie"
require "action_cable/engine"

Bundler.require(*Rails.groups)

module RailsHello
  # One small app with the features real Rails apps lean on: text, JSON,
  # ERB, a form with CSRF, uploads, send_file, SSE, sessions, ActiveRecord
  # on SQLite and an ActionCable channel.
  class Application < Rails::Application
    config.load_defaults 7.2
    config.eager_load = Rails.env.production?
    config.enable_reloading = false
    config.consider_all_requests_local = !Rails.env.production?

    # Logs go to stdout, as under a process manager.
    config.logger = ActiveSupport::TaggedLogging.new(ActiveSupport::Logger.new($stdout))
    config.log_level = ENV.fetch("RAILS_LOG_LEVEL", "info")

    config.session_store :cookie_store, key: "_rails_hello_session"

    # In-process pub/sub: each echo goes back to the connection it came on.
    config.action_cable.mount_path = "/cable"
    config.action_cable.allowed_request_origins = [%r{\Ahttps?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\z}]
  end
end
