-- The dynamic half of the testbed's ingress controller, as ingress-nginx's Lua balancer:
-- which Service each location sends to and the ready endpoints of each backend live in a
-- shared dict, posted by the controller to the control server (127.0.0.1:10246 in the pod),
-- so endpoint changes and backend switches need no reload (a reload closes clients' idle
-- keep-alive connections, and a request sent on one at that moment fails).
--
-- The controller posts the whole table at once (one version string + one text blob, so a
-- worker never sees half a change); each worker parses it again only when the version moved.
local balancer = require("ngx.balancer")

local _M = {}
local dict = ngx.shared.configuration
local cache = { version = nil, routes = {}, upstreams = {} }
local next_index = {}  -- per upstream: the round-robin position, per worker

local function parse(text)
  local routes, upstreams = {}, {}
  for line in text:gmatch("[^\n]+") do
    local kind, key, value = line:match("^(%a+)\t([^\t]*)\t?(.*)$")
    if kind == "route" then
      routes[key] = value ~= "" and value or false
    elseif kind == "upstream" then
      local eps = {}
      for ep in value:gmatch("%S+") do
        local ip, port = ep:match("^(.+):(%d+)$")
        if ip then eps[#eps + 1] = { ip, tonumber(port) } end
      end
      upstreams[key] = eps
    end
  end
  return routes, upstreams
end

local function current()
  local version = dict:get("version")
  if version ~= cache.version then
    cache.routes, cache.upstreams = parse(dict:get("config") or "")
    cache.version = version
  end
  return cache
end

-- POST /configuration: the body is the table (lines "route\t<location>\t<upstream>" and
-- "upstream\t<name>\t<ip:port> ..."), the X-Version header its version
function _M.configure()
  if ngx.req.get_method() ~= "POST" then
    return ngx.exit(ngx.HTTP_NOT_ALLOWED)
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  local version = ngx.req.get_headers()["X-Version"]
  if not body or not version then
    return ngx.exit(ngx.HTTP_BAD_REQUEST)
  end
  local ok, err = dict:set("config", body)
  if ok then ok, err = dict:set("version", version) end
  if not ok then
    ngx.status = ngx.HTTP_INTERNAL_SERVER_ERROR
    ngx.say(err)
    return ngx.exit(ngx.status)
  end
  ngx.say("version ", version)
end

-- /healthz: ready once the controller has posted a table
function _M.healthz()
  return ngx.exit(dict:get("version") and ngx.HTTP_OK or ngx.HTTP_SERVICE_UNAVAILABLE)
end

-- access phase of a location: pick its backend; 503 when it has no ready endpoint, as
-- ingress-nginx answers
function _M.route()
  local c = current()
  local upstream = c.routes[ngx.var.ingress_location]
  local eps = upstream and c.upstreams[upstream]
  if not eps or #eps == 0 then
    return ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE)
  end
  ngx.var.proxy_upstream_name = upstream
  ngx.ctx.endpoints = eps
end

-- balancer phase, once per try: round robin over the ready endpoints; a refused or timed-out
-- try moves on to the endpoint after the one this request just tried (proxy_next_upstream), at
-- most one try per endpoint. The retry follows the request's own last pick, not the shared
-- rotation: other requests advance that in between, and could hand the retry the endpoint
-- that just failed (an endpoint removed a moment ago and not yet out of the table).
function _M.balance()
  local eps = ngx.ctx.endpoints
  local name = ngx.var.proxy_upstream_name
  local i
  if not ngx.ctx.picked then
    if #eps > 1 then balancer.set_more_tries(#eps - 1) end
    i = (next_index[name] or 0) % #eps + 1
    next_index[name] = i
  else
    i = ngx.ctx.picked % #eps + 1
  end
  ngx.ctx.picked = i
  local ok, err = balancer.set_current_peer(eps[i][1], eps[i][2])
  if not ok then
    ngx.log(ngx.ERR, "set_current_peer ", eps[i][1], ":", eps[i][2], ": ", err)
    return ngx.exit(ngx.HTTP_BAD_GATEWAY)
  end
end

return _M
