//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import SidestatAggregation
import SidestatConfiguration
import SidestatProtocol

/// The Graphite backend's own statistics, which statsd reports in the next flush (`graphiteStats.*`).
public struct GraphiteStatistics: Sendable, Hashable {
    /// Unix seconds of the last successful delivery.
    public var lastFlush: Double
    /// Unix seconds of the last failure (0 until there is one, as in statsd).
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
/// Pure: no sockets and no clocks except the `calculationtime` measurement passed in by `now`. Every constant piece
/// of a name (namespaces, `.rate`, each timer statistic's `.name`) is prepared once per flush, so a line costs
/// copies of bytes and a number, with no reference counting.
public struct GraphiteEncoder {
    /// A part of the payload, and the metric lines (datapoints) in it.
    public typealias Chunk = StreamPayload

    let data: FlushData
    let configuration: GraphiteConfiguration
    let sanitizeNames: Bool
    let previous: GraphiteStatistics
    let chunkSize: Int
    let now: () -> Double
    let constants: Constants
    /// `constants`' memory, read without touching the object (which keeps it alive).
    let constantBytes: UnsafeRawPointer
    let constantTable: UnsafeBufferPointer<(Int, Int)>
    let calculator: TimerStatisticsCalculator
    let pickle: Bool
    let startTime: Double

    /// What the encoder writes next: statsd's order (counters, timers, gauges, sets, then its own lines).
    enum Phase: Int {
        case counters, timers, gauges, sets, trailer, lastFrame, done
    }

    private var phase = Phase.counters
    private var index = 0
    var buffer: [UInt8] = []
    private var points = 0
    var pickleItems = 0
    var frameStart = 0
    /// The last key split into its name and its `;tags` (a timer's key is used for a dozen lines in a row).
    private var splitKey: UnsafeRawPointer? = nil
    private var splitKeyCount = 0
    private var splitKeyAt = 0
    /// The last value that is not an integer, as JavaScript prints it.
    private var number: [UInt8] = []
    private var numberValue = Double.nan
    /// Values that were NaN or infinite and were left out (no such value ever leaves Sidestat).
    public private(set) var skippedNonFinite = 0

    /// Where the daemon's instance name goes, and a prefix for every name (Hosted Graphite's API key).
    public struct Naming: Sendable {
        public var linePrefix = ""
        public var instance: String? = nil
        public var instanceAsTag = false
        /// Retry-buffer figures to report (statsd has none: sent only when not 0).
        public var queuedBytes = 0
        public var droppedPoints = 0

        public init(linePrefix: String = "", instance: String? = nil, instanceAsTag: Bool = false) {
            self.linePrefix = linePrefix
            self.instance = instance
            self.instanceAsTag = instanceAsTag
        }
    }

    let naming: Naming

    /// - Parameters:
    ///   - sanitizeNames: sanitize the name part of each key (statsd does when `keyNameSanitize` is off, since
    ///     ingest then stored the key raw).
    ///   - now: milliseconds on any clock, for `graphiteStats.calculationtime`.
    public init(
        data: FlushData, configuration: GraphiteConfiguration, sanitizeNames: Bool, previous: GraphiteStatistics,
        naming: Naming = Naming(), chunkSize: Int = 256 * 1024, now: @escaping () -> Double
    ) {
        self.naming = naming
        self.data = data
        self.configuration = configuration
        self.sanitizeNames = sanitizeNames
        self.previous = previous
        self.chunkSize = chunkSize
        self.now = now
        self.startTime = now()
        self.pickle = configuration.wireProtocol == .pickle
        self.calculator = TimerStatisticsCalculator(configuration: data.timerStatistics)
        func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
        func join(_ parts: [String]) -> [UInt8] {
            let kept = parts.filter { !$0.isEmpty }
            return kept.isEmpty ? [] : bytes(kept.joined(separator: ".") + ".")
        }
        // Instance in the path: a segment before every key, and before prefixStats in statsd's own lines.
        let pathInstance = naming.instanceAsTag ? nil : naming.instance.map(Self.pathSegment)
        let ps = pathInstance.map { "\($0).\(data.prefixStats)" } ?? data.prefixStats
        let c = configuration
        var strings: [[UInt8]]
        let statsPrefix: String
        let numStats: String
        if c.legacyNamespace {
            strings = [bytes("stats."), bytes("stats_counts."), bytes("stats.timers."), bytes("stats.gauges."), bytes("stats.sets.")]
            statsPrefix = "stats.\(ps)."
            numStats = "\(ps).numStats"
        } else {
            let global = c.globalPrefix.isEmpty ? [] : [c.globalPrefix]
            let counter = join(global + [c.prefixCounter])
            strings = [counter, counter, join(global + [c.prefixTimer]), join(global + [c.prefixGauge]), join(global + [c.prefixSet])]
            // globalNamespace.concat(prefixStats).join('.'): an empty prefixStats still takes its place.
            let stats = (global + [ps]).joined(separator: ".")
            statsPrefix = stats + "."
            numStats = stats + ".numStats"
        }
        strings.append(c.globalSuffix.map { bytes("." + $0) } ?? [])
        var timestamp: [UInt8] = [UInt8(ascii: " ")]
        JSNumber.appendInteger(Int64(data.timestamp), to: &timestamp)
        timestamp.append(UInt8(ascii: "\n"))
        strings.append(timestamp)
        strings.append(bytes(".rate"))
        strings.append(bytes(".count"))
        strings.append(bytes(numStats))
        for name in [
            "graphiteStats.calculationtime", "processing_time", "graphiteStats.last_exception", "graphiteStats.last_flush",
            "graphiteStats.flush_time", "graphiteStats.flush_length",
        ] {
            strings.append(bytes(statsPrefix + name))
        }
        strings.append(bytes(naming.linePrefix))
        strings.append(pathInstance.map { bytes($0 + ".") } ?? [])
        // As a tag value: cleaned as a key, without `;` (which would start another tag).
        strings.append(
            naming.instanceAsTag
                ? naming.instance.map { bytes(";instance=" + KeySanitizer.sanitize($0).filter { $0 != ";" }) } ?? [] : [])
        strings.append(bytes(statsPrefix + "graphiteStats.queued_bytes"))
        strings.append(bytes(statsPrefix + "graphiteStats.dropped_points"))
        precondition(strings.count == Constants.statistics)
        for name in data.timerStatistics.statisticNames { strings.append(bytes("." + name)) }
        self.constants = Constants(strings)
        self.constantBytes = UnsafeRawPointer(self.constants.storage.baseAddress!)
        self.constantTable = UnsafeBufferPointer(self.constants.table)
        self.buffer.reserveCapacity(chunkSize + 4096)
        self.number.reserveCapacity(32)
    }

    /// Whether statsd's own lines end the payload (not for a group of late points: metrics only).
    public var includesTrailer = true

    /// The next part of the payload, or nil when the flush is complete.
    public mutating func nextChunk() -> Chunk? {
        while self.phase != .done {
            switch self.phase {
            case .counters:
                self.encodeCounters()
            case .timers:
                self.encodeTimers()
            case .gauges:
                self.encodeGauges()
            case .sets:
                self.encodeSets()
            case .trailer:
                if self.includesTrailer { self.trailer() }
                self.phase = .lastFrame
                continue
            case .lastFrame, .done:
                self.phase = .done
                self.endFrame()
                return self.takeChunk(force: true)
            }
            if self.buffer.count >= self.chunkSize, let chunk = self.takeChunk(force: false) {
                return chunk
            }
        }
        return nil
    }

    /// Encodes entries of the current phase until the chunk is full or the phase ends.
    private mutating func encodeCounters() {
        let snapshot = self.data.snapshot
                let seconds = self.data.flushInterval.inSeconds
        let legacy = self.configuration.legacyNamespace
        let counts = self.configuration.flushCounts
        snapshot.withKeyBytes { keys in
            while self.index < snapshot.counters.count, self.wantsMore {
                let counter = snapshot.counters[self.index]
                let key = keys[counter.key]
                if legacy {
                    self.line(self.constant(Constants.counterRate), key, nil, nil, counter.value / seconds)
                    if counts { self.line(self.constant(Constants.counterCount), key, nil, nil, counter.value) }
                } else {
                    self.line(self.constant(Constants.counterRate), key, self.constant(Constants.rateName), nil, counter.value / seconds)
                    if counts {
                        self.line(self.constant(Constants.counterCount), key, self.constant(Constants.countName), nil, counter.value)
                    }
                }
                self.index += 1
            }
        }
        if self.index >= snapshot.counters.count { self.nextPhase() }
    }

    private mutating func encodeTimers() {
        let snapshot = self.data.snapshot
                let calculator = self.calculator
        let statisticBase = Constants.statistics
        snapshot.withKeyBytes { keys in
            snapshot.timerSamples.withUnsafeBufferPointer { all in
                while self.index < snapshot.timers.count, self.wantsMore {
                    let timer = snapshot.timers[self.index]
                    let key = keys[timer.key]
                    let samples = UnsafeBufferPointer(rebasing: all[timer.samples])
                    let prefix = self.constant(Constants.timerPrefix)
                    calculator.forEachStatistic(samples: samples, count: timer.count, key: key) { statistic, value in
                        self.line(prefix, key, self.constant(statisticBase + statistic), nil, value)
                    }
                    self.index += 1
                }
            }
        }
        if self.index >= snapshot.timers.count { self.nextPhase() }
    }

    private mutating func encodeGauges() {
        let snapshot = self.data.snapshot
                snapshot.withKeyBytes { keys in
            while self.index < snapshot.gauges.count, self.wantsMore {
                let gauge = snapshot.gauges[self.index]
                self.line(self.constant(Constants.gaugePrefix), keys[gauge.key], nil, nil, gauge.value)
                self.index += 1
            }
        }
        if self.index >= snapshot.gauges.count { self.nextPhase() }
    }

    private mutating func encodeSets() {
        let snapshot = self.data.snapshot
                snapshot.withKeyBytes { keys in
            while self.index < snapshot.sets.count, self.wantsMore {
                let set = snapshot.sets[self.index]
                self.line(
                    self.constant(Constants.setPrefix), keys[set.key],
                    self.constant(Constants.countName), nil, Double(set.members.count))
                self.index += 1
            }
        }
        if self.index >= snapshot.sets.count { self.nextPhase() }
    }

    /// Keep encoding: the chunk has room, or a pickle frame is still open (frames never straddle chunks).
    private var wantsMore: Bool { self.buffer.count < self.chunkSize || (self.pickle && self.pickleItems > 0) }

    @inline(__always)
    private func constant(_ index: Int) -> UnsafeRawBufferPointer {
        let (offset, count) = self.constantTable[index]
        return UnsafeRawBufferPointer(start: self.constantBytes + offset, count: count)
    }

    private mutating func nextPhase() {
        self.phase = Phase(rawValue: self.phase.rawValue + 1) ?? .done
        self.index = 0
    }

    private mutating func trailer() {
                let t = Constants.trailer
        self.line(self.constant(t), nil, nil, nil, Double(self.data.numStats))
        let calculation = (self.now() - self.startTime).rounded(.down)
        self.line(self.constant(t + 1), nil, nil, nil, max(0, calculation))
        self.line(self.constant(t + 2), nil, nil, nil, Double(self.data.processingTime.inMilliseconds))
        self.line(self.constant(t + 3), nil, nil, nil, self.previous.lastException)
        self.line(self.constant(t + 4), nil, nil, nil, self.previous.lastFlush)
        self.line(self.constant(t + 5), nil, nil, nil, self.previous.flushTime)
        self.line(self.constant(t + 6), nil, nil, nil, self.previous.flushLength)
        if self.naming.queuedBytes > 0 || self.naming.droppedPoints > 0 {
            self.line(self.constant(Constants.queued), nil, nil, nil, Double(self.naming.queuedBytes))
            self.line(self.constant(Constants.queued + 1), nil, nil, nil, Double(self.naming.droppedPoints))
        }
    }

    /// An instance name as one Graphite path segment: its dots become `_`, other unsafe characters go.
    static func pathSegment(_ instance: String) -> String {
        let replaced = String(instance.map { $0 == "." ? "_" : $0 })
        return KeySanitizer.sanitize(replaced)
    }

    /// `<prefix><key's name part><name><subname><suffix><;tags> <value> <timestamp>`.
    @inline(__always)
    private mutating func line(
        _ prefix: UnsafeRawBufferPointer, _ key: UnsafeRawBufferPointer?, _ name: UnsafeRawBufferPointer?,
        _ subname: UnsafeRawBufferPointer?, _ value: Double
    ) {
        guard value.isFinite else {
            self.skippedNonFinite += 1
            return
        }
        if !self.pickle, self.plainLine(prefix, key, name, subname, value) { return }
        if self.pickle { self.beginPickleItem() }
        let nameStart = self.buffer.count
        self.buffer.appendRaw(self.constant(Constants.linePrefix))
        self.buffer.appendRaw(prefix)
        var tags = UnsafeRawBufferPointer(start: nil, count: 0)
        if let key {
            self.buffer.appendRaw(self.constant(Constants.instanceSegment))
            var split = 0
            while split < key.count, key[split] != UInt8(ascii: ";") { split += 1 }
            let namePart = UnsafeRawBufferPointer(rebasing: key[0..<split])
            tags = UnsafeRawBufferPointer(rebasing: key[split...])
            if self.sanitizeNames && !KeySanitizer.isClean(namePart) {
                self.buffer.append(contentsOf: KeySanitizer.sanitize(String(decoding: namePart, as: UTF8.self)).utf8)
            } else {
                self.buffer.appendRaw(namePart)
            }
        }
        if let name { self.buffer.appendRaw(name) }
        if let subname { self.buffer.appendRaw(subname) }
        self.buffer.appendRaw(self.constant(Constants.suffix))
        self.buffer.appendRaw(tags)
        self.buffer.appendRaw(self.constant(Constants.instanceTag))
        if self.pickle {
            self.escapePickleString(from: nameStart)
            self.endPickleItem(value)
        } else {
            self.buffer.append(UInt8(ascii: " "))
            JSNumber.append(value, to: &self.buffer)
            self.buffer.appendRaw(self.constant(Constants.timestamp))
        }
        self.points += 1
    }

    /// The plaintext line of `line`, assembled on the stack and appended to the chunk in one copy (the common case:
    /// a name that needs no sanitizing, a line of at most 1,016 bytes). False, having written nothing, for anything
    /// else. An integer is written in place; any other value is formatted once into `number` and reused while the
    /// value repeats (a timer's `count_ps` is the same for every timer with one sample).
    @inline(__always)
    private mutating func plainLine(
        _ prefix: UnsafeRawBufferPointer, _ key: UnsafeRawBufferPointer?, _ name: UnsafeRawBufferPointer?,
        _ subname: UnsafeRawBufferPointer?, _ value: Double
    ) -> Bool {
        let integer = value == value.rounded(.towardZero) && abs(value) < 9_007_199_254_740_992
        if !integer && value.bitPattern != self.numberValue.bitPattern {
            self.number.removeAll(keepingCapacity: true)
            JSNumber.append(value, to: &self.number)
            self.numberValue = value
        }
        var namePart = UnsafeRawBufferPointer(start: nil, count: 0)
        var tags = UnsafeRawBufferPointer(start: nil, count: 0)
        if let key {
            if key.baseAddress != self.splitKey || key.count != self.splitKeyCount {
                self.splitKey = key.baseAddress
                self.splitKeyCount = key.count
                self.splitKeyAt = ByteScan.firstIndex(of: UInt8(ascii: ";"), in: key, from: 0, to: key.count)
            }
            let split = self.splitKeyAt
            namePart = UnsafeRawBufferPointer(rebasing: key[0..<split])
            tags = UnsafeRawBufferPointer(rebasing: key[split...])
            if self.sanitizeNames && !KeySanitizer.isClean(namePart) { return false }
        }
        let linePrefix = self.constant(Constants.linePrefix)
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        let instanceSegment = key == nil ? empty : self.constant(Constants.instanceSegment)
        let suffix = self.constant(Constants.suffix)
        let instanceTag = self.constant(Constants.instanceTag)
        let timestamp = self.constant(Constants.timestamp)
        let name = name ?? empty
        let subname = subname ?? empty
        let length =
            linePrefix.count + prefix.count + instanceSegment.count + namePart.count + name.count + subname.count
            + suffix.count + tags.count + instanceTag.count + 1 + max(20, self.number.count) + timestamp.count
        guard length <= 1016 else { return false }
        // On the stack (1 KiB at most), with 8 bytes of slack: pieces are copied a word at a time, the last word whole.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { line in
            let start = line.baseAddress!
            var end = start
            @inline(__always) func copy(_ piece: UnsafeRawBufferPointer) {
                guard let base = piece.baseAddress else { return }
                let count = piece.count
                let target = UnsafeMutableRawPointer(end)
                var index = 0
                while index &+ 8 <= count {
                    target.storeBytes(
                        of: base.loadUnaligned(fromByteOffset: index, as: UInt64.self), toByteOffset: index,
                        as: UInt64.self)
                    index &+= 8
                }
                if index < count {
                    target.storeBytes(
                        of: ByteScan.word(base, at: index, end: count), toByteOffset: index, as: UInt64.self)
                }
                end += count
            }
            copy(linePrefix)
            copy(prefix)
            copy(instanceSegment)
            copy(namePart)
            copy(name)
            copy(subname)
            copy(suffix)
            copy(tags)
            copy(instanceTag)
            end.pointee = UInt8(ascii: " ")
            end += 1
            if integer {
                end += JSNumber.writeInteger(Int64(value), to: end)
            } else {
                self.number.withUnsafeBytes { copy($0) }
            }
            copy(timestamp)
            self.buffer.append(contentsOf: UnsafeBufferPointer(start: start, count: end - start))
        }
        self.points += 1
        return true
    }

    private mutating func takeChunk(force: Bool) -> Chunk? {
        // Chunks hold whole pickle frames: a frame still open stays for the next chunk.
        if self.pickle, self.pickleItems > 0, !force { return nil }
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
