-- wrk script for bench/soak.rb: each connection waits 10 ms between
-- requests, so the offered load is (connections / 10 ms), below the peak.
function delay()
  return 10
end
