//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration

/// The Prometheus backend: `/metrics` on the HTTP port (`httpPort`, else its own `prometheus.port`).
public struct PrometheusConfiguration: BackendSection, Hashable {
    public var port = 9102
    public var address = "127.0.0.1"
    /// Whether the file set `prometheus.port` or `prometheus.address`.
    public var portIsExplicit = false
    /// Histogram bucket bounds for timers, in seconds (timers are received in milliseconds).
    public var buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// Histogram bucket bounds for DogStatsD distributions (`|d`), in the values' own unit: 1-2.5-5 steps from 1 to
    /// 100,000.
    public var distributionBuckets: [Double] = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000]

    public init() {}

    public static let names = ["prometheus", "./backends/prometheus"]
    public static let keys = ["prometheus"]

    public init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        let prometheus = reader.section(object, "prometheus", example: "{port: 9102, buckets: [0.1, 1, 10]}")
        if let port = reader.integer(prometheus["port"], key: "prometheus.port", in: 0...65_535) {
            self.port = port
            self.portIsExplicit = true
        }
        if let address = reader.nonEmptyString(
            prometheus["address"], key: "prometheus.address", what: "the address /metrics is served on, such as \"127.0.0.1\"")
        {
            self.address = address
            self.portIsExplicit = true
        }
        if let buckets = Self.buckets(prometheus["buckets"], key: "prometheus.buckets", unit: "seconds", &reader) {
            self.buckets = buckets
        }
        if let buckets = Self.buckets(
            prometheus["distributionBuckets"], key: "prometheus.distributionBuckets", unit: "the values' unit", &reader)
        {
            self.distributionBuckets = buckets
        }
    }

    static func buckets(_ value: JSValue, key: String, unit: String, _ reader: inout ConfigurationReader)
        -> [Double]?
    {
        if case .undefined = value { return nil }
        if case .null = value { return nil }
        var values: [Double] = []
        if case .array(let buckets) = value {
            for (index, bucket) in buckets.enumerated() {
                if let value = reader.number(bucket, key: "\(key)[\(index)]") { values.append(value) }
            }
        }
        guard values == values.sorted(), Set(values).count == values.count, !values.isEmpty else {
            reader.problem(key, "must be a non-empty list of increasing numbers (\(unit))")
            return nil
        }
        return values
    }

    public func describe(into description: inout ConfigurationDescription) {
        description.add("prometheus", "{ address: \(description.quote(self.address)), port: \(self.port) }")
    }

    public var pageListener: (address: String, port: Int)? { (self.address, self.port) }
    public var pageListenerIsExplicit: Bool { self.portIsExplicit }

    public func makeBackend(_ context: BackendContext) -> any MetricsBackend {
        PrometheusBackend(
            buckets: self.buckets, distributionBuckets: self.distributionBuckets, instance: context.configuration.instance, startupTime: context.startupTime,
            endpoint: context.httpEndpoint ?? "", seriesBudget: context.configuration.seriesBudget)
    }
}
