# frozen_string_literal: true

require "open3"

module Bench
  # A P-256 key and a self-signed certificate for localhost and 127.0.0.1,
  # made by the openssl command in +dir+, for the TLS benchmarks (every
  # server gets the same pair). Returns [cert_path, key_path].
  module TLSCert
    def self.make(dir)
      cert = File.join(dir, "cert.pem")
      key = File.join(dir, "key.pem")
      _, err, status = Open3.capture3("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                      "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                                      "-days", "2", "-subj", "/CN=localhost",
                                      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
      abort "bench: openssl req failed: #{err}" unless status.success?
      [cert, key]
    end
  end
end
