// The same file node statsd read under honcho; Sidestat reads it as is.
{
  port: 8125,
  flushInterval: 10000,
  dumpMessages: true,
  graphiteHost: process.env.GRAPHITE_HOST,
  graphitePort: parseInt(process.env.GRAPHITE_PORT) || 2003,
  backends: ["./backends/graphite", "./backends/console"],
  // One statsd per dyno: each dyno's series under its own name (stats_counts.web_1.Homepage_hits, from $DYNO), so
  // that three dynos add up instead of overwriting each other; sumSeries(stats_counts.*.Homepage_hits) is the total.
  // Without this line the names are statsd's own (stats_counts.Homepage_hits), right for a single dyno.
  graphite: { instance: "path" }
}
