//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatConfiguration
import SidestatProtocol

/// The Graphite backend's own statistics, which statsd reports in the next flush (`graphiteStats.*`).
public struct GraphiteStatistics: Sendable, Hashable {
    /// Unix seconds of the last successful delivery.
    public var lastFlush: Double
    /// Unix seconds of the last failure (statsd starts it at the start-up time).
    public var lastException: Double
    /// How long the last delivery took, in milliseconds.
    public var flushTime: Double = 0
    /// The last payload's length in bytes.
    public var flushLength: Double = 0

    public init(startupTime: Double) {
        self.lastFlush = startupTime
        self.lastException = startupTime
    }
}

/// Turns a flush into Graphite's plaintext or pickle protocol, byte for byte as Etsy statsd's graphite backend
/// names and prints it, in chunks so that a flush of a million keys never sits in memory whole.
///
/// Pure: no sockets and no clocks except the `calculationtime` measurement passed in by `now`.
public struct GraphiteEncoder {
    public struct Chunk: Sendable {
        public var bytes: [UInt8]
        /// The metric lines (datapoints) in `bytes`.
        public var points: Int
    }

    let data: FlushData
    let configuration: GraphiteConfiguration
    let sanitizeNames: Bool
    let previous: GraphiteStatistics
    let chunkSize: Int
    let now: () -> Double

    private var phase = 0
    private var index = 0
    private var buffer: [UInt8] = []
    private var points = 0
    private var calculator: TimerStatisticsCalculator
    private let startTime: Double
    private var pickleItems = 0
    private var frameStart = 0
    /// Values that were NaN or infinite and were left out (no such value ever leaves Sidestat).
    public private(set) var skippedNonFinite = 0

    // Namespaces, as bytes ending in "." (or empty).
    private let counterRate: [UInt8]
    private let counterCount: [UInt8]
    private let timerPrefix: [UInt8]
    private let gaugePrefix: [UInt8]
    private let setPrefix: [UInt8]
    private let statsPrefix: [UInt8]
    private let numStatsName: [UInt8]
    private let suffix: [UInt8]
    private let timestamp: [UInt8]

    /// - Parameters:
    ///   - sanitizeNames: sanitize the name part of each key (statsd does when `keyNameSanitize` is off, since
    ///     ingest then stored the key raw).
    ///   - now: milliseconds on any clock, for `graphiteStats.calculationtime`.
    public init(
        data: FlushData, configuration: GraphiteConfiguration, sanitizeNames: Bool, previous: GraphiteStatistics,
        chunkSize: Int = 256 * 1024, now: @escaping () -> Double
    ) {
        self.data = data
        self.configuration = configuration
        self.sanitizeNames = sanitizeNames
        self.previous = previous
        self.chunkSize = chunkSize
        self.now = now
        self.startTime = now()
        self.calculator = TimerStatisticsCalculator(configuration: data.timerStatistics)
        func join(_ parts: [String]) -> [UInt8] {
            let kept = parts.filter { !$0.isEmpty }
            return kept.isEmpty ? [] : Array((kept.joined(separator: ".") + ".").utf8)
        }
        let ps = data.prefixStats
        let c = configuration
        if c.legacyNamespace {
            self.counterRate = Array("stats.".utf8)
            self.counterCount = Array("stats_counts.".utf8)
            self.timerPrefix = Array("stats.timers.".utf8)
            self.gaugePrefix = Array("stats.gauges.".utf8)
            self.setPrefix = Array("stats.sets.".utf8)
            self.statsPrefix = Array("stats.\(ps).".utf8)
            self.numStatsName = Array("\(ps).numStats".utf8)
        } else {
            let global = c.globalPrefix.isEmpty ? [] : [c.globalPrefix]
            self.counterRate = join(global + [c.prefixCounter])
            self.counterCount = self.counterRate
            self.timerPrefix = join(global + [c.prefixTimer])
            self.gaugePrefix = join(global + [c.prefixGauge])
            self.setPrefix = join(global + [c.prefixSet])
            // globalNamespace.concat(prefixStats).join('.'): an empty prefixStats still takes its place.
            let stats = (global + [ps]).joined(separator: ".")
            self.statsPrefix = Array((stats + ".").utf8)
            self.numStatsName = Array((stats + ".numStats").utf8)
        }
        self.suffix = c.globalSuffix.map { Array(("." + $0).utf8) } ?? []
        var timestamp: [UInt8] = [UInt8(ascii: " ")]
        JSNumber.appendInteger(Int64(data.timestamp), to: &timestamp)
        self.timestamp = timestamp
        self.buffer.reserveCapacity(chunkSize + 4096)
    }

    /// The next part of the payload, or nil when the flush is complete.
    public mutating func nextChunk() -> Chunk? {
        let snapshot = self.data.snapshot
        while self.phase < 6 {
            switch self.phase {
            case 0:
                guard self.index < snapshot.counters.count else { return self.advancePhase() }
                let counter = snapshot.counters[self.index]
                let rate = counter.value / (Double(self.data.flushIntervalMilliseconds) / 1000)
                snapshot.withBytes(counter.key) { key in
                    if self.configuration.legacyNamespace {
                        self.line(self.counterRate, key: key, value: rate)
                        if self.configuration.flushCounts {
                            self.line(self.counterCount, key: key, value: counter.value)
                        }
                    } else {
                        self.line(self.counterRate, key: key, name: "rate", value: rate)
                        if self.configuration.flushCounts {
                            self.line(self.counterCount, key: key, name: "count", value: counter.value)
                        }
                    }
                }
            case 1:
                guard self.index < snapshot.timers.count else { return self.advancePhase() }
                self.encodeTimer(snapshot.timers[self.index], in: snapshot)
            case 2:
                guard self.index < snapshot.gauges.count else { return self.advancePhase() }
                let gauge = snapshot.gauges[self.index]
                snapshot.withBytes(gauge.key) { key in
                    self.line(self.gaugePrefix, key: key, value: gauge.value)
                }
            case 3:
                guard self.index < snapshot.sets.count else { return self.advancePhase() }
                let set = snapshot.sets[self.index]
                snapshot.withBytes(set.key) { key in
                    self.line(self.setPrefix, key: key, name: "count", value: Double(set.members.count))
                }
            case 4:
                self.trailer()
                self.phase = 5
                continue
            default:
                self.phase = 6
                self.endFrame()
                return self.takeChunk(force: true)
            }
            self.index += 1
            if self.buffer.count >= self.chunkSize, let chunk = self.takeChunk(force: false) {
                return chunk
            }
        }
        return nil
    }

    private mutating func advancePhase() -> Chunk? {
        self.phase += 1
        self.index = 0
        return self.nextChunk()
    }

    private mutating func encodeTimer(_ timer: MetricSnapshot.TimerEntry, in snapshot: MetricSnapshot) {
        snapshot.timerSamples.withUnsafeBufferPointer { all in
            snapshot.withBytes(timer.key) { key in
                let samples = UnsafeBufferPointer(rebasing: all[timer.samples])
                var calculator = self.calculator
                calculator.forEachStatistic(samples: samples, count: timer.count, key: key) { name, subname, value in
                    self.line(self.timerPrefix, key: key, name: name, subname: subname, value: value)
                }
                self.calculator = calculator
            }
        }
    }

    private mutating func trailer() {
        let numStats = Double(self.data.numStats)
        self.rawLine(self.numStatsName, value: numStats)
        let calculation = (self.now() - self.startTime).rounded(.down)
        self.rawLine(self.statsPrefix + Array("graphiteStats.calculationtime".utf8), value: max(0, calculation))
        self.rawLine(self.statsPrefix + Array("processing_time".utf8), value: Double(self.data.processingTimeMilliseconds))
        self.rawLine(self.statsPrefix + Array("graphiteStats.last_exception".utf8), value: self.previous.lastException)
        self.rawLine(self.statsPrefix + Array("graphiteStats.last_flush".utf8), value: self.previous.lastFlush)
        self.rawLine(self.statsPrefix + Array("graphiteStats.flush_time".utf8), value: self.previous.flushTime)
        self.rawLine(self.statsPrefix + Array("graphiteStats.flush_length".utf8), value: self.previous.flushLength)
    }

    /// `<prefix><name part>[.name[.subname]]<suffix><;tags> <value> <timestamp>`.
    private mutating func line(
        _ prefix: [UInt8], key: UnsafeRawBufferPointer, name statName: String? = nil, subname: String? = nil,
        value: Double
    ) {
        guard value.isFinite else {
            self.skippedNonFinite += 1
            return
        }
        var split = 0
        while split < key.count, key[split] != UInt8(ascii: ";") { split += 1 }
        let name = UnsafeRawBufferPointer(rebasing: key[0..<split])
        let tags = UnsafeRawBufferPointer(rebasing: key[split...])
        var output = self.beginLine()
        let nameStart = output.count
        output.append(contentsOf: prefix)
        if self.sanitizeNames && !KeySanitizer.isClean(name) {
            output.append(contentsOf: KeySanitizer.sanitize(String(decoding: name, as: UTF8.self)).utf8)
        } else {
            output.append(contentsOf: name)
        }
        if var statName {
            output.append(UInt8(ascii: "."))
            statName.withUTF8 { output.append(contentsOf: $0) }
        }
        if var subname {
            output.append(UInt8(ascii: "."))
            subname.withUTF8 { output.append(contentsOf: $0) }
        }
        output.append(contentsOf: self.suffix)
        output.append(contentsOf: tags)
        if self.configuration.wireProtocol == .pickle { Self.escapePickleString(&output, from: nameStart) }
        self.endLine(&output, value: value)
    }

    private mutating func rawLine(_ name: [UInt8], value: Double) {
        guard value.isFinite else {
            self.skippedNonFinite += 1
            return
        }
        var output = self.beginLine()
        let nameStart = output.count
        output.append(contentsOf: name)
        output.append(contentsOf: self.suffix)
        if self.configuration.wireProtocol == .pickle { Self.escapePickleString(&output, from: nameStart) }
        self.endLine(&output, value: value)
    }

    /// A pickled string is a quoted literal: escape `\`, `'` and line breaks in the name (raw tags can hold them).
    private static func escapePickleString(_ output: inout [UInt8], from start: Int) {
        guard output[start...].contains(where: { $0 == UInt8(ascii: "'") || $0 == UInt8(ascii: "\\") || $0 < 0x20 })
        else { return }
        var escaped: [UInt8] = []
        for byte in output[start...] {
            switch byte {
            case UInt8(ascii: "'"), UInt8(ascii: "\\"):
                escaped.append(UInt8(ascii: "\\"))
                escaped.append(byte)
            case UInt8(ascii: "\n"):
                escaped.append(contentsOf: Array("\\n".utf8))
            case UInt8(ascii: "\r"):
                escaped.append(contentsOf: Array("\\r".utf8))
            case 0..<0x20:
                escaped.append(contentsOf: Array("\\x".utf8))
                let hex = Array("0123456789abcdef".utf8)
                escaped.append(hex[Int(byte >> 4)])
                escaped.append(hex[Int(byte & 0xF)])
            default:
                escaped.append(byte)
            }
        }
        output.replaceSubrange(start..., with: escaped)
    }

    // MARK: - Wire formats

    /// Text: `name value ts\n`. Pickle (protocol 0, as statsd writes it): `(S'name'\n(L<ts>L\nS'<value>'\ntta`
    /// inside `(l ... .` frames of at most 500 datapoints, each behind a 4-byte big-endian length.
    private mutating func beginLine() -> [UInt8] {
        var output: [UInt8] = []
        swap(&output, &self.buffer)
        if self.configuration.wireProtocol == .pickle {
            if self.pickleItems == 0 {
                self.frameStart = output.count
                output.append(contentsOf: [0, 0, 0, 0, UInt8(ascii: "("), UInt8(ascii: "l")])
            }
            output.append(contentsOf: Array("(S'".utf8))
        }
        return output
    }

    private mutating func endLine(_ output: inout [UInt8], value: Double) {
        if self.configuration.wireProtocol == .pickle {
            output.append(contentsOf: Array("'\n(L".utf8))
            JSNumber.appendInteger(Int64(self.data.timestamp), to: &output)
            output.append(contentsOf: Array("L\nS'".utf8))
            JSNumber.append(value, to: &output)
            output.append(contentsOf: Array("'\ntta".utf8))
            swap(&output, &self.buffer)
            self.points += 1
            self.pickleItems += 1
            if self.pickleItems == 500 { self.endFrame() }
            return
        }
        output.append(UInt8(ascii: " "))
        JSNumber.append(value, to: &output)
        output.append(contentsOf: self.timestamp)
        output.append(UInt8(ascii: "\n"))
        swap(&output, &self.buffer)
        self.points += 1
    }

    private mutating func endFrame() {
        guard self.configuration.wireProtocol == .pickle, self.pickleItems > 0 else { return }
        self.buffer.append(UInt8(ascii: "."))
        let length = UInt32(self.buffer.count - self.frameStart - 4)
        self.buffer[self.frameStart] = UInt8(truncatingIfNeeded: length >> 24)
        self.buffer[self.frameStart + 1] = UInt8(truncatingIfNeeded: length >> 16)
        self.buffer[self.frameStart + 2] = UInt8(truncatingIfNeeded: length >> 8)
        self.buffer[self.frameStart + 3] = UInt8(truncatingIfNeeded: length)
        self.pickleItems = 0
    }

    private mutating func takeChunk(force: Bool) -> Chunk? {
        // A pickle frame must not be split between chunks only if it is unfinished; frames are self-delimiting
        // on the wire, so any split between whole frames is fine.
        if self.configuration.wireProtocol == .pickle, self.pickleItems > 0, !force { return nil }
        guard !self.buffer.isEmpty else { return nil }
        var chunk: [UInt8] = []
        chunk.reserveCapacity(self.chunkSize + 4096)
        swap(&chunk, &self.buffer)
        let points = self.points
        self.points = 0
        return Chunk(bytes: chunk, points: points)
    }

    /// The whole payload at once (tests and small flushes).
    public mutating func encodeAll() -> [UInt8] {
        var all: [UInt8] = []
        while let chunk = self.nextChunk() { all += chunk.bytes }
        return all
    }
}
