//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import SidestatAggregation
import SidestatConfiguration

/// InfluxDB's line protocol: one measurement per key, tagged with its type, the instance and the key's own tags;
/// counters carry `count` and `rate`, timers every statistic statsd computes (`mean`, `upper_90`, `bin_100`...),
/// gauges `value`, sets `count`. Timestamps in seconds (`precision=s`).
public enum InfluxEncoder {
    public static let linesPerRequest = 5000

    public static func requests(_ data: FlushData, configuration: InfluxDBConfiguration, instance: String) -> [HTTPRequest] {
        let snapshot = data.snapshot
        var lines: [[UInt8]] = []
        let timestamp = " \(data.timestamp)\n"
        func line(_ key: ByteRange, _ type: String, _ fields: [(String, Double)]) {
            let finite = fields.filter { $0.1.isFinite }
            guard !finite.isEmpty else { return }
            let metric = MetricName(snapshot.string(key))
            var writer = TextWriter()
            writer.write(Self.escape(metric.name.isEmpty ? "_" : metric.name, measurement: true))
            var tags = metric.tags.filter { !$0.key.isEmpty && !$0.value.isEmpty }
            tags.append(("instance", instance))
            tags.append(("metric_type", type))
            for tag in tags.sorted(by: { $0.key < $1.key }) {
                writer.write(",\(Self.escape(tag.key))=\(Self.escape(tag.value))")
            }
            for (index, field) in finite.enumerated() {
                writer.write(index == 0 ? " " : ",")
                writer.write(Self.escape(field.0) + "=")
                writer.write(field.1)
            }
            writer.write(timestamp)
            lines.append(writer.bytes)
        }
        let seconds = data.flushInterval.inSeconds
        for counter in snapshot.counters {
            line(counter.key, "counter", [("count", counter.value), ("rate", counter.value / seconds)])
        }
        let calculator = TimerStatisticsCalculator(configuration: data.timerStatistics)
        let names = data.timerStatistics.statisticNames.map { name in
            name.hasPrefix("histogram.") ? String(name.dropFirst("histogram.".count)) : name
        }
        snapshot.timerSamples.withUnsafeBufferPointer { all in
            for timer in snapshot.timers {
                var fields: [(String, Double)] = []
                snapshot.withBytes(timer.key) { key in
                    calculator.forEachStatistic(
                        samples: UnsafeBufferPointer(rebasing: all[timer.samples]), count: timer.count, key: key
                    ) { statistic, value in fields.append((names[statistic], value)) }
                }
                line(timer.key, "timer", fields)
            }
        }
        for gauge in snapshot.gauges { line(gauge.key, "gauge", [("value", gauge.value)]) }
        for set in snapshot.sets { line(set.key, "set", [("count", Double(set.members.count))]) }

        let url: String
        var headers = ["Content-Type: text/plain; charset=utf-8"]
        var basicAuth: String? = nil
        if configuration.isVersion2 {
            url = configuration.url + "/api/v2/write?org=\(Self.query(configuration.org ?? ""))&bucket=\(Self.query(configuration.bucket ?? ""))&precision=s"
            if let token = configuration.token { headers.append("Authorization: Token \(token)") }
        } else {
            url = configuration.url + "/write?db=\(Self.query(configuration.database))&precision=s"
            if let user = configuration.username { basicAuth = "\(user):\(configuration.password ?? "")" }
        }
        var requests: [HTTPRequest] = []
        var start = 0
        while start < lines.count {
            let batch = lines[start..<min(start + Self.linesPerRequest, lines.count)]
            requests.append(
                HTTPRequest(url: url, headers: headers, body: batch.flatMap { $0 }, basicAuth: basicAuth, points: batch.count))
            start += Self.linesPerRequest
        }
        return requests
    }

    /// Line protocol escaping: commas and spaces (and `=` outside measurements) take a backslash.
    static func escape(_ text: String, measurement: Bool = false) -> String {
        var out = ""
        for character in text {
            if character == "," || character == " " || (!measurement && character == "=") || character == "\\" {
                out.append("\\")
            }
            if character == "\n" { continue }
            out.append(character)
        }
        return out
    }

    /// Percent-encoding for a query parameter.
    static func query(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                out.append(Character(Unicode.Scalar(byte)))
            default:
                let hex = Array("0123456789ABCDEF")
                out += "%\(hex[Int(byte >> 4)])\(hex[Int(byte & 0xF)])"
            }
        }
        return out
    }
}
