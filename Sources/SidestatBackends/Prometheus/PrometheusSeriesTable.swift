//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The series a Prometheus upstream holds between flushes (the `/metrics` page, remote write): each flush is folded
/// in, counters and histograms adding up since start, gauges and set sizes taking the interval's value.
///
/// The rules that keep every series valid for a real Prometheus:
/// - Names and labels as `PrometheusNaming` makes them. Two keys that become the same series (`a.b` and `a_b`)
///   share it: their counts add up, the last gauge wins.
/// - A metric name belongs to one family of one type. A family also claims the names of its samples (a histogram
///   `h` claims `h_bucket`, `h_sum` and `h_count`); a key whose family would take a name another family holds is
///   refused while that family is there, counted (`name_clashes`) and warned about once.
/// - Counters never go down: an interval whose count for a series is negative is not added, and is counted
///   (`negative_increments`).
/// - No `+Inf` or `NaN` is ever served: a value, or an addition to a total or a sum, that would not be finite is
///   left out and counted (`non_finite_values`).
/// - At most `seriesBudget` series of each type (counter, gauge, histogram); new ones past it are refused and
///   counted (`series_dropped`).
/// - A series leaves when a flush no longer brings its key (`deleteIdleStats`, a management `del*`), and a key
///   that comes back starts again from 0.
///
/// Keys seen before are found by their bytes, so a flush costs one hash lookup per key once the series exist.
struct PrometheusSeriesTable: Sendable {
    enum Kind: String, Sendable {
        case counter
        case gauge
        case histogram
    }

    struct Settings: Sendable {
        var naming: PrometheusNaming
        /// Classic bucket bounds for timers (seconds) and distributions (their own unit).
        var timerBuckets: [Double]
        var distributionBuckets: [Double]
        /// Native (exponential) histograms instead of classic buckets.
        var native: Bool
        var seriesBudget: Int
    }

    struct Series: Sendable {
        /// Whether the slot holds a series (false: free for the next new one).
        var live = true
        /// The metric family: `x_total`, `x`, `x_seconds`.
        var family: String
        var kind: Kind
        var isDistribution: Bool
        /// Sorted, valid and unique, `sidestat_instance` included; `__name__` is the family.
        var labels: [PrometheusLabel]
        /// The labels in the text format, `{a="b",...}`.
        var rendered: String
        /// A counter's total since it appeared, or a gauge's value.
        var value: Double = 0
        /// A histogram's counts (`.none` for the other kinds).
        var histogram = PrometheusHistogram.none
        /// The fold that last brought it, and the one it appeared in.
        var seen: UInt64
        var since: UInt64
        /// The statsd key (its type tag, then its bytes) that feeds it, and any other keys that became the same series.
        var key: [UInt8]
        var moreKeys: [[UInt8]] = []
        /// Remote write's encoding of its labels, made when it is first sent.
        var wire: [UInt8] = []

        /// An empty slot.
        static let free = Series(
            live: false, family: "", kind: .gauge, isDistribution: false, labels: [], rendered: "", seen: 0, since: 0,
            key: [])
    }

    struct Family: Sendable {
        var kind: Kind
        var isDistribution: Bool
        var series = 0
    }

    /// What one fold did, for the backend's warnings and figures.
    struct FoldReport: Sendable {
        /// Families refused for a name clash for the first time (each is warned about once).
        var newClashes: [String] = []
        var clashed = 0
        var dropped = 0
        var negative = 0
        var nonFinite = 0
        /// Series that left with this fold (remote write sends each a staleness marker).
        var removed: [Series] = []
    }

    /// Since start, for the backend's `status()`.
    struct Totals: Sendable {
        var seriesDropped = 0
        var nameClashes = 0
        var negativeIncrements = 0
        var nonFiniteValues = 0
    }

    let settings: Settings
    /// Every slot, live or free (`Series.live`); a free slot is reused by the next new series.
    private(set) var series: [Series] = []
    private var free: [Int] = []
    /// A key's hash (with its type tag) → its series; a key whose hash another key already holds goes to
    /// `collisions` instead (so a lookup never allocates, and is still exact).
    private var byHash: [Int: Int32] = [:]
    private var collisions: [[UInt8]: Int] = [:]
    /// A series' identity (family and labels) by its hash; `identities` when two identities share a hash.
    private var byIdentity: [Int: Int] = [:]
    private var identities: [String: Int] = [:]
    private(set) var families: [String: Family] = [:]
    private var live: [Kind: Int] = [:]
    private var warnedClashes: Set<String> = []
    /// The series of each key of the last fold, by its place in the snapshot's list (counters, gauges, sets,
    /// timers), or -1: the aggregator keeps its keys in the same order from one interval to the next, so a key is
    /// usually found by comparing its bytes with the one at the same place last time, without hashing.
    private var places: [[Int32]] = [[], [], [], []]
    /// Folds so far.
    private(set) var generation: UInt64 = 0
    private(set) var totals = Totals()

    init(_ settings: Settings) {
        self.settings = settings
    }

    /// Live series.
    var count: Int { self.live.values.reduce(0, +) }

    /// Whether the series at `index` first appeared in the last fold (remote write's counter-reset hint).
    func isNew(_ index: Int) -> Bool { self.series[index].since == self.generation }

    mutating func setWire(_ index: Int, _ bytes: [UInt8]) { self.series[index].wire = bytes }

    // The type tags of the key cache: a key's series depends on its statsd type.
    private static let counterTag: UInt8 = 0
    private static let gaugeTag: UInt8 = 1
    private static let setTag: UInt8 = 2
    private static let timerTag: UInt8 = 3
    private static let distributionTag: UInt8 = 4

    /// Folds one flush in.
    mutating func fold(_ snapshot: MetricSnapshot) -> FoldReport {
        self.generation += 1
        var report = FoldReport()
        let keys = snapshot.counters.count + snapshot.gauges.count + snapshot.sets.count + snapshot.timers.count
        if self.byHash.capacity < keys { self.byHash.reserveCapacity(keys) }
        // One pointer to the key bytes for the whole fold (a closure per key would copy the table to call into it).
        snapshot.withKeyBytes { arena in
            snapshot.timerSamples.withUnsafeBufferPointer { samples in
                self.fold(snapshot, arena: arena, samples: samples, &report)
            }
        }
        for index in self.series.indices where self.series[index].live && self.series[index].seen != self.generation {
            report.removed.append(self.series[index])
            self.remove(index)
        }
        self.totals.seriesDropped += report.dropped
        self.totals.nameClashes += report.clashed
        self.totals.negativeIncrements += report.negative
        self.totals.nonFiniteValues += report.nonFinite
        return report
    }

    private mutating func fold(
        _ snapshot: MetricSnapshot, arena: MetricSnapshot.KeyBytes, samples: UnsafeBufferPointer<Double>,
        _ report: inout FoldReport
    ) {
        func key(_ range: ByteRange) -> UnsafeRawBufferPointer { arena[range] }
        var places = self.places
        self.places = []
        defer { self.places = places }
        for list in 0..<4 {
            let count = [snapshot.counters.count, snapshot.gauges.count, snapshot.sets.count, snapshot.timers.count][list]
            if places[list].count != count {
                places[list] = [Int32](repeating: -1, count: count)
            }
        }
        /// The series of the key at `place` in `list`.
        func index(_ list: Int, _ place: Int, _ tag: UInt8, _ bytes: UnsafeRawBufferPointer) -> Int? {
            let last = Int(places[list][place])
            if last >= 0, self.matches(last, tag, bytes) {
                self.series[last].seen = self.generation
                return last
            }
            let index = self.index(tag, bytes, &report)
            places[list][place] = Int32(index ?? -1)
            return index
        }
        for (place, counter) in snapshot.counters.enumerated() {
            guard let index = index(0, place, Self.counterTag, key(counter.key)) else { continue }
            guard counter.value >= 0 else {
                report.negative += 1
                continue
            }
            let total = self.series[index].value + counter.value
            guard total.isFinite else {
                report.nonFinite += 1
                continue
            }
            self.series[index].value = total
        }
        for (place, gauge) in snapshot.gauges.enumerated() {
            guard let index = index(1, place, Self.gaugeTag, key(gauge.key)) else { continue }
            guard gauge.value.isFinite else {
                report.nonFinite += 1
                continue
            }
            self.series[index].value = gauge.value
        }
        for (place, set) in snapshot.sets.enumerated() {
            guard let index = index(2, place, Self.setTag, key(set.key)) else { continue }
            self.series[index].value = Double(set.members.count)
        }
        let timerBuckets = self.settings.timerBuckets
        let distributionBuckets = self.settings.distributionBuckets
        for (place, timer) in snapshot.timers.enumerated() {
            let tag = timer.isDistribution ? Self.distributionTag : Self.timerTag
            guard let index = index(3, place, tag, key(timer.key)) else { continue }
            // A timer's milliseconds become seconds; a distribution's values keep their unit.
            let scale = timer.isDistribution ? 1 : 1.0 / 1000
            let bounds = timer.isDistribution ? distributionBuckets : timerBuckets
            report.nonFinite += self.series[index].histogram.observe(
                UnsafeBufferPointer(rebasing: samples[timer.samples]), scale: scale, bounds: bounds)
        }
    }

    @inline(__always)
    private static func hash(_ tag: UInt8, _ bytes: UnsafeRawBufferPointer) -> Int {
        var hasher = Hasher()
        hasher.combine(tag)
        hasher.combine(bytes: bytes)
        return hasher.finalize()
    }

    /// Whether the live series at `index` is fed by the key `tag` + `bytes`.
    private mutating func matches(_ index: Int, _ tag: UInt8, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard self.series[index].live else { return false }
        func same(_ key: [UInt8]) -> Bool {
            guard key.count == bytes.count + 1, key[0] == tag else { return false }
            return key.withUnsafeBytes { stored in
                bytes.isEmpty || memcmp(stored.baseAddress! + 1, bytes.baseAddress!, bytes.count) == 0
            }
        }
        if same(self.series[index].key) { return true }
        return !self.series[index].moreKeys.isEmpty && self.series[index].moreKeys.contains(where: same)
    }

    /// The series a key already feeds, found without allocating. (`mutating` only so that calling it never copies
    /// the table.)
    private mutating func lookUp(_ tag: UInt8, _ bytes: UnsafeRawBufferPointer, hash: Int) -> Int? {
        if let found = self.byHash[hash], self.matches(Int(found), tag, bytes) { return Int(found) }
        guard !self.collisions.isEmpty else { return nil }
        return self.collisions[[tag] + Array(bytes)]
    }

    /// The series a key feeds, made when it is new, or nil when it is refused (a name clash, the budget).
    private mutating func index(_ tag: UInt8, _ bytes: UnsafeRawBufferPointer, _ report: inout FoldReport) -> Int? {
        let hash = Self.hash(tag, bytes)
        if let found = self.lookUp(tag, bytes, hash: hash) {
            self.series[found].seen = self.generation
            return found
        }
        var cacheKey: [UInt8] = [tag]
        cacheKey.append(contentsOf: bytes)
        let name = MetricName(String(decoding: bytes, as: UTF8.self))
        let base = PrometheusNaming.metricName(name.name)
        let family: String
        let kind: Kind
        let isDistribution = tag == Self.distributionTag
        switch tag {
        case Self.counterTag: (family, kind) = (base + "_total", .counter)
        case Self.timerTag: (family, kind) = (base + "_seconds", .histogram)
        case Self.distributionTag: (family, kind) = (base, .histogram)
        default: (family, kind) = (base, .gauge)
        }
        // The family must be this type, and its names free.
        if let existing = self.families[family] {
            guard existing.kind == kind, existing.isDistribution == isDistribution else {
                return self.clash(family, &report)
            }
        } else if self.namesTaken(by: family, kind) {
            return self.clash(family, &report)
        }
        let labels = self.settings.naming.labels(name.tags)
        let rendered = PrometheusNaming.render(labels)
        let identity = Self.identity(family, rendered)
        let index: Int
        if let existing = self.series(identity, family, rendered) {
            // Another key that became the same series: they share it.
            index = existing
            self.series[index].moreKeys.append(cacheKey)
            self.series[index].seen = self.generation
        } else {
            guard self.live[kind, default: 0] < self.settings.seriesBudget else {
                report.dropped += 1
                return nil
            }
            var series = Series(
                family: family, kind: kind, isDistribution: isDistribution, labels: labels, rendered: rendered,
                seen: self.generation, since: self.generation, key: cacheKey)
            if kind == .histogram {
                series.histogram =
                    self.settings.native
                    ? PrometheusHistogram(native: ())
                    : PrometheusHistogram(
                        classicBounds: isDistribution ? self.settings.distributionBuckets : self.settings.timerBuckets)
            }
            if let reused = self.free.popLast() {
                index = reused
                self.series[index] = series
            } else {
                index = self.series.count
                self.series.append(series)
            }
            if self.byIdentity[identity] == nil {
                self.byIdentity[identity] = index
            } else {
                self.identities[family + rendered] = index
            }
            if self.families[family] == nil {
                self.families[family] = Family(kind: kind, isDistribution: isDistribution)
            }
            self.families[family]!.series += 1
            self.live[kind, default: 0] += 1
        }
        if self.byHash[hash] == nil {
            self.byHash[hash] = Int32(index)
        } else {
            self.collisions[cacheKey] = index
        }
        return index
    }

    private mutating func clash(_ family: String, _ report: inout FoldReport) -> Int? {
        report.clashed += 1
        if self.warnedClashes.insert(family).inserted { report.newClashes.append(family) }
        return nil
    }

    private mutating func remove(_ index: Int) {
        let series = self.series[index]
        for key in [series.key] + series.moreKeys {
            let hash = key.withUnsafeBytes { Self.hash(key[0], UnsafeRawBufferPointer(rebasing: $0[1...])) }
            if self.byHash[hash] == Int32(index) { self.byHash[hash] = nil }
            if !self.collisions.isEmpty { self.collisions[key] = nil }
        }
        let identity = Self.identity(series.family, series.rendered)
        if self.byIdentity[identity] == index { self.byIdentity[identity] = nil }
        if !self.identities.isEmpty { self.identities[series.family + series.rendered] = nil }
        self.live[series.kind, default: 0] -= 1
        self.families[series.family]!.series -= 1
        if self.families[series.family]!.series == 0 { self.families[series.family] = nil }
        self.series[index] = Series.free
        self.free.append(index)
    }

    static let histogramSuffixes = ["_bucket", "_sum", "_count"]

    /// Whether a new family's sample names are taken: a histogram's `_bucket`, `_sum` or `_count` name is a family
    /// of its own, or the family's name is one of a histogram family's.
    private func namesTaken(by family: String, _ kind: Kind) -> Bool {
        if kind == .histogram, Self.histogramSuffixes.contains(where: { self.families[family + $0] != nil }) {
            return true
        }
        for suffix in Self.histogramSuffixes where family.hasSuffix(suffix) {
            if self.families[String(family.dropLast(suffix.count))]?.kind == .histogram { return true }
        }
        return false
    }

    static func identity(_ family: String, _ rendered: String) -> Int {
        var hasher = Hasher()
        hasher.combine(family)
        hasher.combine(rendered)
        return hasher.finalize()
    }

    /// The live series with this family and labels.
    private func series(_ identity: Int, _ family: String, _ rendered: String) -> Int? {
        if let index = self.byIdentity[identity], self.series[index].family == family,
            self.series[index].rendered == rendered
        {
            return index
        }
        return self.identities.isEmpty ? nil : self.identities[family + rendered]
    }
}
