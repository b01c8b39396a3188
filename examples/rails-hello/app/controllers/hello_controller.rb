# frozen_string_literal: true

require "digest"

# Text, JSON, an ERB page, a session counter, an upload and send_file.
class HelloController < ApplicationController
  def text
    render plain: "Hello from Rails on Kino"
  end

  def json
    render json: { hello: "world", rails: Rails.version, pid: Process.pid }
  end

  # ERB with a layout; the layout carries the CSRF meta tags.
  def page
    @notes = Note.count
  end

  # The visit count, kept in the cookie session.
  def counter
    session[:count] = session.fetch(:count, 0) + 1
    render json: { count: session[:count] }
  end

  # A multipart upload: the file's name, size and SHA-256 as Rails saw them.
  def upload
    file = params.require(:file)
    render json: { name: file.original_filename, size: file.size,
                   sha256: Digest::SHA256.file(file.tempfile.path).hexdigest, note: params[:note] }
  end

  # send_file with a Pathname (Rails.root.join), as apps write it.
  def readme
    send_file Rails.root.join("README.md"), type: "text/markdown", disposition: "inline"
  end
end
