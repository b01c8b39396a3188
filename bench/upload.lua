-- POST a 64 KiB body (65,536 bytes); wrk adds the Content-Length header.
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
