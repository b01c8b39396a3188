# frozen_string_literal: true

require_relative "helper"

# PROXY protocol over real sockets, with headers written by hand: the
# client address comes from the header, a missing or broken header
# closes the connection before the app sees anything, and the header
# must arrive within header_timeout. (test/deploy/ meets HAProxy and nginx.)
class ProxyProtocolTest < Minitest::Test
  include KinoTest

  ENV_APP = ->(env) { [200, { "content-type" => "text/plain" }, ["#{env['REMOTE_ADDR']} #{env['REMOTE_PORT']}"]] }
  REQUEST = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
  V2_SIG = "\r\n\r\n\0\r\nQUIT\n".b

  def v2(command, family, body)
    V2_SIG + [0x20 | command, family, body.bytesize].pack("CCn") + body.b
  end

  def v2_tcp4(src, dst, sport, dport, tlvs = "".b)
    addrs = src.split(".").map(&:to_i).pack("C4") + dst.split(".").map(&:to_i).pack("C4")
    v2(1, 0x11, addrs + [sport, dport].pack("nn") + tlvs)
  end

  def served(port, bytes)
    parse_responses(raw(port, bytes)).first
  end

  def test_v1_sets_remote_addr_and_port
    serve(ENV_APP, proxy_protocol: true) do |server|
      response = served(server.port, "PROXY TCP4 203.0.113.7 127.0.0.1 40123 80\r\n#{REQUEST}")
      assert_equal 200, response.status
      assert_equal "203.0.113.7 40123", response.body
      v6 = served(server.port, "PROXY TCP6 2001:db8::5 ::1 7 80\r\n#{REQUEST}")
      assert_equal "2001:db8::5 7", v6.body
    end
  end

  def test_v2_sets_remote_addr_and_skips_tlvs
    serve(ENV_APP, proxy_protocol: true) do |server|
      tlv = [0x02, 3].pack("Cn") + "abc" # PP2_TYPE_AUTHORITY
      response = served(server.port, v2_tcp4("198.51.100.9", "127.0.0.1", 5555, 80, tlv) + REQUEST)
      assert_equal "198.51.100.9 5555", response.body
    end
  end

  def test_v2_local_and_v1_unknown_keep_the_socket_address
    serve(ENV_APP, proxy_protocol: true) do |server|
      [v2(0, 0x00, ""), "PROXY UNKNOWN\r\n"].each do |header|
        addr, port = served(server.port, header + REQUEST).body.split
        assert_equal "127.0.0.1", addr
        assert_operator port.to_i, :>, 0
      end
    end
  end

  def test_header_split_across_packets
    serve(ENV_APP, proxy_protocol: true) do |server|
      socket = connect(server.port)
      "PROXY TCP4 192.0.2.44 127.0.0.1 1000 80\r\n#{REQUEST}".each_char.each_slice(7) do |piece|
        socket.write(piece.join)
        sleep 0.001
      end
      assert_equal "192.0.2.44 1000", parse_responses(read_all(socket)).first.body
    ensure
      socket&.close
    end
  end

  def test_keep_alive_requests_after_one_header
    serve(ENV_APP, proxy_protocol: true) do |server|
      socket = connect(server.port)
      socket.write("PROXY TCP4 192.0.2.1 127.0.0.1 9 80\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
      assert_equal "192.0.2.1 9", read_response(socket).body
      socket.write("GET /b HTTP/1.1\r\nHost: x\r\n\r\n") # no second header
      assert_equal "192.0.2.1 9", read_response(socket).body
    ensure
      socket&.close
    end
  end

  def test_missing_or_malformed_header_closes_without_a_response
    calls = Queue.new
    app = lambda { |env|
      calls << env
      [200, {}, ["x"]]
    }
    serve(app, proxy_protocol: true) do |server|
      [REQUEST, "PROXY TCP4 1.2.3.4 5.6.7.8 01 80\r\n#{REQUEST}", "PROXY TCP9\r\n#{REQUEST}",
       v2(2, 0x11, "x" * 12) + REQUEST, "#{V2_SIG}\x21\x11\xff\xff"].each do |bytes|
        assert_equal "", raw(server.port, bytes), bytes.inspect
      end
      assert calls.empty?, "the app never ran"
    end
  end

  def test_header_must_come_within_header_timeout
    serve(ENV_APP, proxy_protocol: true, header_timeout: 0.3) do |server|
      socket = connect(server.port)
      socket.write("PROXY TCP4 1.2.3.4") # and nothing more
      assert_equal "", read_all(socket, timeout: 5), "closed without an HTTP answer"
    ensure
      socket&.close
    end
  end

  def test_per_listener_flag
    serve(ENV_APP, bind: ["tcp://127.0.0.1:0?proxy_protocol=1", "tcp://127.0.0.1:0"]) do |server|
      with, without = server.urls.map { |u| u[/\d+\z/].to_i }
      assert_equal "192.0.2.3 4", served(with, "PROXY TCP4 192.0.2.3 127.0.0.1 4 80\r\n#{REQUEST}").body
      assert_match(/\A127\.0\.0\.1 \d+\z/, served(without, REQUEST).body)
      assert_equal 400, served(without, "PROXY TCP4 192.0.2.3 127.0.0.1 4 80\r\n#{REQUEST}").status
    end
  end

  def test_server_option_and_url_override
    serve(ENV_APP, proxy_protocol: true, bind: ["tcp://127.0.0.1:0?proxy_protocol=0", "tcp://127.0.0.1:0"]) do |server|
      plain, proxied = server.urls.map { |u| u[/\d+\z/].to_i }
      assert_equal 200, served(plain, REQUEST).status
      assert_equal "", raw(proxied, REQUEST)
    end
  end
end
