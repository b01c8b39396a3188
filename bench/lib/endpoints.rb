# frozen_string_literal: true

require_relative "http_probe"

module Bench
  BENCH_DIR = File.expand_path("..", __dir__)

  # One benchmarked request: its path, wrk script, and the exact response
  # the bench app (bench/app.rb) must give.
  Endpoint = Struct.new(:name, :method, :path, :script, :script_args, :body, :pipeline,
                        :chunked, keyword_init: true)

  UPLOAD_BODY = ("x" * 65_536).freeze

  ENDPOINTS = [
    Endpoint.new(name: "plaintext", method: "GET", path: "/plaintext", body: "Hello, World!"),
    Endpoint.new(name: "10k", method: "GET", path: "/10k", body: ("0123456789abcdef" * 640).freeze),
    Endpoint.new(name: "cpu", method: "GET", path: "/cpu", body: "6765"),
    Endpoint.new(name: "io", method: "GET", path: "/io", body: "slept"),
    Endpoint.new(name: "io_native", method: "GET", path: "/io_native", body: "slept"),
    Endpoint.new(name: "upload", method: "POST", path: "/upload", body: "65536",
                 script: File.join(BENCH_DIR, "upload.lua")),
    Endpoint.new(name: "stream", method: "GET", path: "/stream", body: ("x" * 10_240).freeze, chunked: true),
    Endpoint.new(name: "pipelined", method: "GET", path: "/plaintext", body: "Hello, World!", pipeline: 16,
                 script: File.join(BENCH_DIR, "pipeline.lua"), script_args: ["16"])
  ].freeze

  ENDPOINT_NAMES = ENDPOINTS.map(&:name).freeze

  # The Endpoint called +name+.
  def self.endpoint(name)
    ENDPOINTS.find { |endpoint| endpoint.name == name }
  end

  # Checks that a server answers an endpoint exactly as the bench app
  # should, so that a fast wrong answer is never measured.
  module Validation
    Outcome = Struct.new(:error, :warnings, keyword_init: true)

    # Request +endpoint+ once (16 times, pipelined, for "pipelined") on
    # 127.0.0.1:+port+. Returns an Outcome: +error+ is nil when valid;
    # +warnings+ lists missing Date/Server headers, which are errors
    # instead when +strict+.
    def self.check(port, endpoint, strict: false)
      count = endpoint.pipeline || 1
      request = HttpProbe.request(endpoint.method, endpoint.path, endpoint.method == "POST" ? UPLOAD_BODY : nil)
      responses = HttpProbe.exchange(port, [request] * count)
      warnings = []
      responses.each_with_index do |response, index|
        error = response_error(response, endpoint) || (strict && soft_errors(response).first)
        error = "response #{index + 1} of #{count}: #{error}" if error && count > 1
        return Outcome.new(error: error, warnings: []) if error

        warnings |= soft_errors(response)
      end
      Outcome.new(error: nil, warnings: warnings)
    rescue StandardError, Timeout::Error => e
      Outcome.new(error: "#{e.class}: #{e.message}", warnings: [])
    end

    # What is wrong with +response+ (status, required headers, body), or nil.
    def self.response_error(response, endpoint)
      return "status #{response.status}" unless response.status == 200
      return "no Content-Type header" unless response.headers["content-type"]
      return "no Content-Length or Transfer-Encoding header" if response.body.nil?
      if endpoint.chunked && !response.headers["transfer-encoding"].to_s.downcase.include?("chunked")
        return "not chunked (Transfer-Encoding: #{response.headers['transfer-encoding'] || 'none'})"
      end

      body_error(response.body, endpoint.body)
    end

    # How +body+ differs from +expected+, or nil.
    def self.body_error(body, expected)
      return nil if body == expected
      return "body is #{body.bytesize} bytes, expected #{expected.bytesize}" if expected.bytesize > 64

      "body #{body[0, 64].inspect}, expected #{expected.inspect}"
    end

    # The headers every response should have but Rack does not require:
    # Date and Server (RFC 9110; TechEmpower requires both).
    def self.soft_errors(response)
      %w[date server].reject { |name| response.headers[name] }
                     .map { |name| "no #{name.capitalize} header" }
    end
  end
end
