-- POST one fixed body to one URL and print a JSON summary that benchlib.py parses.
-- Arguments after `--`: the body file and its Content-Type.

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  prepared = wrk.format("POST", nil, { ["Content-Type"] = args[2] }, body)
end

function request()
  return prepared
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, ' ..
    '"mean_us": %.1f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(99.0),
    latency.mean, errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
