-- v2 reads: GET /v2/keys/<prefix>/<n>, n uniformly random over KV_KEYS names
-- (the harness pre-populates all of them with kv_load.lua first).
dofile(os.getenv("KV_HARNESS_DIR") .. "/report.lua")

local keys   = tonumber(os.getenv("KV_KEYS") or "10000")
local prefix = os.getenv("KV_PREFIX") or "bench"
local reqs   = nil

function init(args)
   math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
   if reqs == nil then
      reqs = {}
      for i = 0, keys - 1 do
         reqs[i + 1] = wrk.format("GET", "/v2/keys/" .. prefix .. "/" .. i)
      end
   end
   return reqs[math.random(keys)]
end
