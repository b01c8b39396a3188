-- HTTP pipelining, the TechEmpower way: every write sends `depth`
-- requests back to back (wrk ... URL -- 16). wrk counts each response.
init = function(args)
  local depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format()
  end
  pipelined = table.concat(requests)
end

request = function()
  return pipelined
end
