/* every kind of value the evaluator reads */
{
  port: 8125, mgmt_port: 8126, flushInterval: 10000,
  graphiteHost: process.env.GRAPHITE_HOST || "localhost", graphitePort: +(process.env.PORT) - 3,
  backends: ["./backends/graphite", "./backends/console"],
  percentThreshold: [90, 99.9, -10], histogram: [{metric: "", bins: [10, 100, "inf"]}],
  graphite: {legacyNamespace: false, globalPrefix: 'app', prefixCounter: `c`},
  deleteIdleStats: !0, debug: (1 > 2) ? true : false, keyNameSanitize: null,
  librato: {email: "a@b", token: "t", source: "s"}, servers: [{server: "./servers/udp", address: "127.0.0.1"}],
}
