//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The fixed parts of one metric's line, made once when the metric is made: `head` is `name:` and `tail` is
/// `|type`, the tags and the newline, so that recording a value only appends bytes to the batch.
struct LineKey: Sendable, Hashable {
    let head: [UInt8]
    let tail: [UInt8]

    /// The key of `name` with `type` (`c`, `g`, `ms`, `d`, `s`), its dimensions written as the configuration says.
    init(name: String, type: String, dimensions: [(String, String)], configuration: SidestatClient.Configuration) {
        var name = configuration.prefix.isEmpty ? name : configuration.prefix + "." + name
        var tags = configuration.tags.map(LineFormat.tag)
        switch configuration.dimensions {
        case .tags:
            tags += dimensions.map { $0.1.isEmpty ? LineFormat.tag($0.0) : LineFormat.tag($0.0 + ":" + $0.1) }
        case .nameSegments:
            for (key, value) in dimensions {
                name += "." + key
                if !value.isEmpty { name += "." + value }
            }
        }
        self.init(name: name, type: type, tags: tags)
    }

    /// The key of `name` (the prefix not yet added) with DogStatsD tags as given (`env:prod`).
    init(name: String, type: String, tags: [String], configuration: SidestatClient.Configuration) {
        let name = configuration.prefix.isEmpty ? name : configuration.prefix + "." + name
        self.init(name: name, type: type, tags: (configuration.tags + tags).map(LineFormat.tag))
    }

    private init(name: String, type: String, tags: [String]) {
        self.head = Array(LineFormat.name(name).utf8) + [UInt8(ascii: ":")]
        var tail = Array(("|" + type).utf8)
        if !tags.isEmpty { tail += Array(("|#" + tags.joined(separator: ",")).utf8) }
        self.tail = tail + [UInt8(ascii: "\n")]
    }

    /// The tail with a sample rate (`|@0.1`) after the type: only for a call that was sampled.
    func tail(sampleRate: Double) -> [UInt8] {
        guard sampleRate < 1 else { return self.tail }
        let bar = self.tail.firstIndex(of: UInt8(ascii: "#")).map { $0 - 1 } ?? self.tail.count - 1
        var tail = self.tail
        tail.insert(contentsOf: Array("|@\(sampleRate)".utf8), at: bar)
        return tail
    }
}

/// Writing values into a batch without allocating: integers digit by digit, milliseconds from nanoseconds exactly,
/// other doubles as Swift's shortest round-trip text (a small string, kept inline).
enum LineFormat {
    /// A metric name the statsd wire format can carry: `:`, `|`, `@`, `#` and line breaks become `_`.
    static func name(_ name: String) -> String {
        String(name.map { ":|@#\n\r".contains($0) ? "_" : $0 })
    }

    /// A tag the wire format can carry: `,`, `|`, `#` and line breaks become `_`.
    static func tag(_ tag: String) -> String {
        String(tag.map { ",|#\n\r".contains($0) ? "_" : $0 })
    }

    /// Appends `value` in decimal.
    @inline(__always)
    static func append(_ value: Int64, to bytes: inout [UInt8]) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        self.append(unsigned: value.magnitude, to: &bytes)
    }

    @inline(__always)
    static func append(unsigned value: UInt64, to bytes: inout [UInt8]) {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits))
        var value = value
        var index = start + digits - 1
        while index >= start {
            bytes[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value % 10)
            value /= 10
            index -= 1
        }
    }

    /// Appends `value`, or returns false for a value statsd cannot read (infinity, NaN).
    @inline(__always)
    static func append(_ value: Double, to bytes: inout [UInt8]) -> Bool {
        guard value.isFinite else { return false }
        if value == value.rounded(.towardZero) && value.magnitude < 9_007_199_254_740_992 {
            self.append(Int64(value), to: &bytes)
        } else {
            bytes.append(contentsOf: value.description.utf8)
        }
        return true
    }

    /// Appends `nanoseconds` as milliseconds, exactly (`1.5` for 1,500,000 ns), as statsd timers are in ms.
    @inline(__always)
    static func appendMilliseconds(_ nanoseconds: Int64, to bytes: inout [UInt8]) {
        if nanoseconds < 0 { bytes.append(UInt8(ascii: "-")) }
        let magnitude = nanoseconds.magnitude
        self.append(unsigned: magnitude / 1_000_000, to: &bytes)
        var fraction = magnitude % 1_000_000
        guard fraction > 0 else { return }
        var digits = 6
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        bytes.append(UInt8(ascii: "."))
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: digits))
        var index = start + digits - 1
        while fraction > 0 {
            bytes[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: fraction % 10)
            fraction /= 10
            index -= 1
        }
    }
}
