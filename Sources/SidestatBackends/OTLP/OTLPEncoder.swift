//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SidestatAggregation
import SidestatConfiguration
import SidestatSupport

/// OpenTelemetry's OTLP/HTTP (protobuf) `ExportMetricsServiceRequest`, with delta temporality: counters are sums of
/// the interval, gauges and set sizes are gauges, and timers are exponential histograms, so that percentiles from
/// many dynos merge correctly in any OTLP store. The resource carries `service.name` and `service.instance.id`
/// (the instance name); a key's tags become data point attributes.
public enum OTLPEncoder {
    public static let metricsPerRequest = 10_000
    /// The most buckets an exponential histogram gets (the OpenTelemetry SDKs' default).
    public static let maximumBuckets = 160

    public static func requests(_ data: FlushData, configuration: OTLPConfiguration, instance: String) -> [HTTPRequest] {
        let snapshot = data.snapshot
        let end = UInt64(data.timestamp) * 1_000_000_000
        let start = end - UInt64(data.flushInterval.inMilliseconds) * 1_000_000
        var metrics: [[UInt8]] = []
        for counter in snapshot.counters where counter.value.isFinite {
            let name = MetricName(snapshot.string(counter.key))
            var sum = Protobuf()
            sum.message(1, Self.numberPoint(name.tags, start, end, counter.value))
            sum.varint(2, 1)  // AGGREGATION_TEMPORALITY_DELTA
            sum.varint(3, counter.value >= 0 ? 1 : 0)  // is_monotonic
            metrics.append(Self.metric(name.name, unit: "", field: 7, sum.bytes))
        }
        for gauge in snapshot.gauges where gauge.value.isFinite {
            let name = MetricName(snapshot.string(gauge.key))
            var body = Protobuf()
            body.message(1, Self.numberPoint(name.tags, start, end, gauge.value))
            metrics.append(Self.metric(name.name, unit: "", field: 5, body.bytes))
        }
        for set in snapshot.sets {
            let name = MetricName(snapshot.string(set.key))
            var body = Protobuf()
            body.message(1, Self.numberPoint(name.tags, start, end, Double(set.members.count)))
            metrics.append(Self.metric(name.name, unit: "", field: 5, body.bytes))
        }
        snapshot.timerSamples.withUnsafeBufferPointer { all in
            for timer in snapshot.timers {
                let name = MetricName(snapshot.string(timer.key))
                let samples = UnsafeBufferPointer(rebasing: all[timer.samples])
                guard let point = Self.histogramPoint(name.tags, start, end, samples) else { continue }
                var body = Protobuf()
                body.message(1, point)
                body.varint(2, 1)  // delta
                // A DogStatsD distribution's values have no unit Sidestat knows; a timer's are milliseconds.
                metrics.append(Self.metric(name.name, unit: timer.isDistribution ? "" : "ms", field: 10, body.bytes))
            }
        }
        var requests: [HTTPRequest] = []
        var index = 0
        repeat {
            let batch = metrics[index..<min(index + Self.metricsPerRequest, metrics.count)]
            var scope = Protobuf()
            var scopeInfo = Protobuf()
            scopeInfo.string(1, "sidestat")
            scope.message(1, scopeInfo.bytes)
            for metric in batch { scope.message(2, metric) }
            var resource = Protobuf()
            resource.message(1, Self.attribute("service.name", configuration.serviceName))
            resource.message(1, Self.attribute("service.instance.id", instance))
            var resourceMetrics = Protobuf()
            resourceMetrics.message(1, resource.bytes)
            resourceMetrics.message(2, scope.bytes)
            var request = Protobuf()
            request.message(1, resourceMetrics.bytes)
            requests.append(
                HTTPRequest(
                    url: configuration.endpoint + "/v1/metrics",
                    headers: ["Content-Type: application/x-protobuf"] + configuration.headers, body: request.bytes,
                    points: batch.count))
            index += Self.metricsPerRequest
        } while index < metrics.count
        return requests
    }

    static func metric(_ name: String, unit: String, field: Int, _ data: [UInt8]) -> [UInt8] {
        var metric = Protobuf()
        metric.string(1, name)
        if !unit.isEmpty { metric.string(3, unit) }
        metric.message(field, data)
        return metric.bytes
    }

    static func attribute(_ key: String, _ value: String) -> [UInt8] {
        var any = Protobuf()
        any.string(1, value)
        var keyValue = Protobuf()
        keyValue.string(1, key)
        keyValue.message(2, any.bytes)
        return keyValue.bytes
    }

    static func numberPoint(_ tags: [(key: String, value: String)], _ start: UInt64, _ end: UInt64, _ value: Double) -> [UInt8] {
        var point = Protobuf()
        point.fixed64(2, start)
        point.fixed64(3, end)
        point.double(4, value)
        for tag in tags { point.message(7, Self.attribute(tag.key, tag.value)) }
        return point.bytes
    }

    /// The bucket of `value` at `scale`: bucket `i` holds (base^i, base^(i+1)], base = 2^(2^-scale).
    public static func bucketIndex(_ value: Double, scale: Int) -> Int {
        Int((log2(value) * exp2(Double(scale))).rounded(.up)) - 1
    }

    /// An exponential histogram of sorted samples; nil when there is none.
    static func histogramPoint(
        _ tags: [(key: String, value: String)], _ start: UInt64, _ end: UInt64, _ samples: UnsafeBufferPointer<Double>
    ) -> [UInt8]? {
        guard !samples.isEmpty, samples.allSatisfy({ $0.isFinite }) else { return nil }
        // Timers are never negative; a distribution's negative values go in the negative buckets, by magnitude.
        let positive = samples.filter { $0 > 0 }
        let negative = samples.filter { $0 < 0 }.map { -$0 }.sorted()
        var scale = 20
        func fits(_ values: [Double]) -> Bool {
            guard let smallest = values.first, let largest = values.last else { return true }
            return Self.bucketIndex(largest, scale: scale) - Self.bucketIndex(smallest, scale: scale) + 1
                <= Self.maximumBuckets
        }
        while scale > -10 && !(fits(positive) && fits(negative)) { scale -= 1 }
        func buckets(_ values: [Double]) -> [UInt8] {
            var offset = 0
            var counts: [UInt64] = []
            if let smallest = values.first, let largest = values.last {
                offset = Self.bucketIndex(smallest, scale: scale)
                counts = [UInt64](repeating: 0, count: Self.bucketIndex(largest, scale: scale) - offset + 1)
                for value in values {
                    counts[min(max(Self.bucketIndex(value, scale: scale) - offset, 0), counts.count - 1)] += 1
                }
            }
            var buckets = Protobuf()
            buckets.sint32(1, offset)
            buckets.packedUInt64(2, counts)
            return buckets.bytes
        }
        var point = Protobuf()
        for tag in tags { point.message(1, Self.attribute(tag.key, tag.value)) }
        point.fixed64(2, start)
        point.fixed64(3, end)
        point.fixed64(4, UInt64(samples.count))
        point.double(5, samples.reduce(0, +))
        point.sint32(6, scale)
        point.fixed64(7, UInt64(samples.count - positive.count - negative.count))
        point.message(8, buckets(positive))
        if !negative.isEmpty { point.message(9, buckets(negative)) }
        point.double(12, samples.first!)
        point.double(13, samples.last!)
        return point.bytes
    }
}
