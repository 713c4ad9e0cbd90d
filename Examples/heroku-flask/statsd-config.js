// The same file node statsd read under honcho; Sidestat reads it as is.
{
  port: 8125,
  flushInterval: 10000,
  dumpMessages: true,
  graphiteHost: process.env.GRAPHITE_HOST,
  graphitePort: parseInt(process.env.GRAPHITE_PORT) || 2003,
  backends: ["./backends/graphite", "./backends/console"]
}
