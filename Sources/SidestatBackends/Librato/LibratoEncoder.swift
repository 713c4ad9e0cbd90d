//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatConfiguration

/// Librato's v1 metrics API, as statsd-librato-backend uses it: `POST /v1/metrics` with basic authentication and a
/// JSON body of gauges. A counter is a gauge of its count in the interval, a timer a complex gauge (count, sum, min,
/// max, sum_squares), a set a gauge of its size. Librato v1 has no tags: a key's tags join its name (`.env_prod`).
public enum LibratoEncoder {
    /// Measurements per request (Librato accepts a few hundred per POST).
    public static let batchSize = 300

    public static func requests(_ data: FlushData, configuration: LibratoConfiguration) -> [HTTPRequest] {
        let snapshot = data.snapshot
        var measurements: [[UInt8]] = []
        func name(_ range: ByteRange) -> String {
            let metric = MetricName(snapshot.string(range))
            var text = metric.name
            for tag in metric.tags { text += ".\(tag.key)_\(tag.value)" }
            return String(text.unicodeScalars.map { scalar -> Character in
                let allowed = ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                    || ".:-_".unicodeScalars.contains(scalar)
                return allowed ? Character(scalar) : "_"
            }).prefix(255).description
        }
        func gauge(_ metric: String, _ value: Double) {
            guard value.isFinite else { return }
            var writer = TextWriter()
            writer.write("{\"name\":")
            writer.jsonString(metric)
            writer.write(",\"value\":")
            writer.write(value)
            writer.write("}")
            measurements.append(writer.bytes)
        }
        for counter in snapshot.counters { gauge(name(counter.key), counter.value) }
        snapshot.timerSamples.withUnsafeBufferPointer { all in
            for timer in snapshot.timers where !timer.samples.isEmpty {
                let samples = all[timer.samples]
                var sum = 0.0
                var squares = 0.0
                for value in samples {
                    sum += value
                    squares += value * value
                }
                guard sum.isFinite, squares.isFinite else { continue }
                var writer = TextWriter()
                writer.write("{\"name\":")
                writer.jsonString(name(timer.key))
                writer.write(",\"count\":")
                writer.write(Double(samples.count))
                writer.write(",\"sum\":")
                writer.write(sum)
                writer.write(",\"min\":")
                writer.write(samples.first!)
                writer.write(",\"max\":")
                writer.write(samples.last!)
                writer.write(",\"sum_squares\":")
                writer.write(squares)
                writer.write("}")
                measurements.append(writer.bytes)
            }
        }
        for gaugeEntry in snapshot.gauges { gauge(name(gaugeEntry.key), gaugeEntry.value) }
        for set in snapshot.sets { gauge(name(set.key), Double(set.members.count)) }

        var requests: [HTTPRequest] = []
        var start = 0
        while start < measurements.count {
            let batch = measurements[start..<min(start + Self.batchSize, measurements.count)]
            var body = TextWriter()
            body.write("{\"source\":")
            body.jsonString(configuration.source)
            body.write(",\"measure_time\":\(data.timestamp),\"gauges\":[")
            for (index, measurement) in batch.enumerated() {
                if index > 0 { body.write(",") }
                body.bytes += measurement
            }
            body.write("]}")
            requests.append(
                HTTPRequest(
                    url: configuration.api + "/v1/metrics", headers: ["Content-Type: application/json"], body: body.bytes,
                    basicAuth: "\(configuration.user):\(configuration.token)", points: batch.count))
            start += Self.batchSize
        }
        return requests
    }
}
