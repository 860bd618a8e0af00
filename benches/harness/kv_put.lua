-- v2 writes: PUT /v2/keys/<prefix>/<n> with a form body value=<KV_VALUE_SIZE bytes>,
-- n uniformly random over KV_KEYS names. Requests are pre-formatted once per
-- thread so that wrk's single core spends its time on the network, not in Lua.
dofile(os.getenv("KV_HARNESS_DIR") .. "/report.lua")

local keys   = tonumber(os.getenv("KV_KEYS") or "10000")
local size   = tonumber(os.getenv("KV_VALUE_SIZE") or "256")
local prefix = os.getenv("KV_PREFIX") or "bench"
local reqs   = nil

local function value(n)
   local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
   local t = {}
   for i = 1, n do
      local j = (i * 7) % #alphabet + 1
      t[i] = alphabet:sub(j, j)
   end
   return table.concat(t)
end

function init(args)
   math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
   if reqs == nil then
      reqs = {}
      local body = "value=" .. value(size)
      for i = 0, keys - 1 do
         reqs[i + 1] = wrk.format("PUT", "/v2/keys/" .. prefix .. "/" .. i,
            { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
      end
   end
   return reqs[math.random(keys)]
end
