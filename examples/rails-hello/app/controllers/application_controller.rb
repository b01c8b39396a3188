# frozen_string_literal: true

class ApplicationController < ActionController::Base
  # Every non-GET request needs the form's (or the page's) token.
  protect_from_forgery with: :exception
end
