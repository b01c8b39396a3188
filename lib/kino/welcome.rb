# frozen_string_literal: true

module Kino
  # The page Kino.serve shows when there is no config.ru: proof that the
  # server works, and what it received. A module, so it is shareable.
  module Welcome
    ESCAPES = { "&" => "&amp;", "<" => "&lt;", ">" => "&gt;", '"' => "&quot;", "'" => "&#39;" }.freeze

    def self.call(env)
      return [405, { "content-type" => "text/plain", "allow" => "GET, HEAD" }, ["Method Not Allowed\n"]] unless %w[GET HEAD].include?(env["REQUEST_METHOD"])

      body = env["REQUEST_METHOD"] == "HEAD" ? [] : [page(env)]
      [200, { "content-type" => "text/html; charset=utf-8" }, body]
    end

    def self.page(env)
      mode = Thread.current[:kino_mode] || :threaded
      headers = env.select { |key, _| key.start_with?("HTTP_") }
                   .map { |key, value| "#{key.delete_prefix('HTTP_').downcase.tr('_', '-')}: #{value}" }
      request = ["#{env['REQUEST_METHOD']} #{env['PATH_INFO']}#{"?#{env['QUERY_STRING']}" unless env['QUERY_STRING'].empty?} #{env['SERVER_PROTOCOL']}", *headers]
      <<~HTML
        <!doctype html>
        <html><head><meta charset="utf-8"><title>Kino #{VERSION}</title>
        <style>body{font:16px/1.5 system-ui,sans-serif;max-width:42em;margin:3em auto;padding:0 1em}pre{background:#f4f4f4;padding:1em;overflow:auto}</style>
        </head><body>
        <h1>Kino #{VERSION} is serving</h1>
        <p>Mode <b>#{mode}</b> on #{escape(RUBY_DESCRIPTION)}.</p>
        <p>Put a <code>config.ru</code> in this directory to serve your own app. This is the request Kino received:</p>
        <pre>#{escape(request.join("\n"))}</pre>
        </body></html>
      HTML
    end

    def self.escape(text)
      text.to_s.gsub(/[&<>"']/, ESCAPES)
    end

    private_class_method :page, :escape
  end
end
