-- Bulk loader: PUT /v2/keys/<prefix>/<n> for n = 0 .. KV_KEYS-1 exactly once
-- each (KV_KEY_FORMAT, default "%07d"), value=<KV_VALUE_SIZE bytes>, over
-- however many connections wrk opens. Run it with one thread (-t1).
--
-- wrk cannot stop after a request count, so once every key has been sent
-- the connections send a harmless GET of a key that does not exist (404)
-- until the harness sees KV_DONE_FILE and interrupts wrk. A 2xx response
-- can therefore only come from a loader PUT: when 2xx + failures reach
-- KV_KEYS every key has been answered. Each thread would walk all keys:
-- run it with -t1.
dofile(os.getenv("KV_HARNESS_DIR") .. "/report.lua")

local keys   = tonumber(os.getenv("KV_KEYS") or "10000")
local size   = tonumber(os.getenv("KV_VALUE_SIZE") or "100")
local prefix = os.getenv("KV_PREFIX") or "mem"
local fmt    = os.getenv("KV_KEY_FORMAT") or "%07d"
local donef  = os.getenv("KV_DONE_FILE")

local next_key, ok, failed, finished = 0, 0, 0, false
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
local body = "value=" .. string.rep("v", size)
local filler = nil
local first_call = true

function request()
   -- wrk calls request() once right after init() only to count pipelined
   -- requests and discards the result: answer that call with the filler so
   -- that no key is lost.
   if first_call then
      first_call = false
      filler = wrk.format("GET", "/v2/keys/" .. prefix .. "-harness-absent/x")
      return filler
   end
   if next_key < keys then
      local path = "/v2/keys/" .. prefix .. "/" .. string.format(fmt, next_key)
      next_key = next_key + 1
      return wrk.format("PUT", path, headers, body)
   end
   return filler
end

function response(status, hdrs, resp_body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   elseif status ~= 404 then
      failed = failed + 1
   end
   if not finished and ok + failed >= keys then
      finished = true
      local f = io.open(donef, "w")
      f:write(string.format('{"ok":%d,"failed":%d}\n', ok, failed))
      f:close()
   end
end
