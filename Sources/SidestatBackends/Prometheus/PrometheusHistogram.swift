//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A histogram series' counts since start: classic buckets (fixed bounds, for the text format and remote write's
/// `classic` mode) or native exponential buckets (remote write's default).
struct PrometheusHistogram: Sendable {
    var count: UInt64 = 0
    var sum: Double = 0
    /// Classic: per bound, not cumulative; the last is +Inf. Empty for a native histogram.
    var classic: [UInt64]
    /// Native: the exponential buckets (empty for a classic histogram).
    var native = NativeHistogram()
    let isNative: Bool

    init(classicBounds: [Double]) {
        self.classic = [UInt64](repeating: 0, count: classicBounds.count + 1)
        self.isNative = false
    }

    init(native: Void) {
        self.classic = []
        self.isNative = true
    }

    /// A series that is not a histogram has this one: it holds nothing.
    static let none = PrometheusHistogram(native: ())

    /// Counts each of `values` times `scale`; returns how many were left out (not finite, or making the sum so).
    mutating func observe(_ values: UnsafeBufferPointer<Double>, scale: Double, bounds: [Double]) -> Int {
        var leftOut = 0
        for value in values where !self.observe(value * scale, bounds: bounds) { leftOut += 1 }
        return leftOut
    }

    /// Counts `value`, unless it or the sum would not be finite (returns false: the value is left out).
    @inline(__always)
    mutating func observe(_ value: Double, bounds: [Double]) -> Bool {
        let sum = self.sum + value
        guard value.isFinite, sum.isFinite else { return false }
        self.sum = sum
        self.count += 1
        if self.isNative {
            self.native.observe(value)
        } else {
            var index = 0
            while index < bounds.count, value > bounds[index] { index += 1 }
            self.classic[index] += 1
        }
        return true
    }
}

/// Prometheus's native histogram at schema 3: each power of two is split into 8 buckets, so a bucket's upper bound
/// is 2^(1/8) ≈ 1.09 times its lower one and a quantile read from it is within about 4.4% of the truth. Bucket `i`
/// holds (2^((i-1)/8), 2^(i/8)]; values within `zeroThreshold` of 0 go in the zero bucket; negative values go in the
/// negative buckets by magnitude. Every dyno uses the same schema, so their histograms add up exactly.
struct NativeHistogram: Sendable, Equatable {
    static let schema = 3
    /// 2^-128, client_golang's default: below every value a timer or a distribution sends in practice.
    static let zeroThreshold = 2.938735877055719e-39

    var zeroCount: UInt64 = 0
    var positive = ExponentialBuckets()
    var negative = ExponentialBuckets()

    /// The bucket index of a positive value: the smallest `i` with value ≤ 2^(i/8). Exact at powers of two.
    @inline(__always)
    static func bucketIndex(_ value: Double) -> Int {
        // value = significand × 2^exponent, significand in [1, 2); the bounds are 2^(j/8), j = 0...7.
        let significand = value.significand
        let sub: Int
        if significand <= 1.4142135623730951 {
            sub = significand <= 1 ? 0 : significand <= 1.0905077326652577 ? 1 : significand <= 1.189207115002721 ? 2
                : significand <= 1.2968395546510096 ? 3 : 4
        } else {
            sub = significand <= 1.5422108254079407 ? 5 : significand <= 1.681792830507429 ? 6
                : significand <= 1.8340080864093424 ? 7 : 8
        }
        return Int(value.exponent) * 8 + sub
    }

    mutating func observe(_ value: Double) {
        if value.magnitude <= Self.zeroThreshold {
            self.zeroCount += 1
        } else if value > 0 {
            self.positive.add(Self.bucketIndex(value))
        } else {
            self.negative.add(Self.bucketIndex(-value))
        }
    }
}

/// Counts in consecutive buckets from `offset` on.
struct ExponentialBuckets: Sendable, Equatable {
    var offset = 0
    var counts: [UInt64] = []

    mutating func add(_ index: Int) {
        if self.counts.isEmpty {
            self.offset = index
            self.counts = [1]
            return
        }
        if index < self.offset {
            self.counts.insert(contentsOf: repeatElement(0, count: self.offset - index), at: 0)
            self.offset = index
        } else if index >= self.offset + self.counts.count {
            self.counts.append(contentsOf: repeatElement(0, count: index - self.offset - self.counts.count + 1))
        }
        self.counts[index - self.offset] += 1
    }

    /// Remote write's form: spans of buckets (the first at its index, each next one at its gap from the previous
    /// one's end; runs of up to 2 empty buckets stay inside a span, as Prometheus's clients do) and each bucket's
    /// count as a delta from the previous bucket's.
    func spansAndDeltas() -> (spans: [(offset: Int, length: Int)], deltas: [Int64]) {
        var spans: [(offset: Int, length: Int)] = []
        var deltas: [Int64] = []
        self.spansAndDeltas(into: &spans, &deltas)
        return (spans, deltas)
    }

    /// `spansAndDeltas()` into arrays the caller reuses.
    func spansAndDeltas(into spans: inout [(offset: Int, length: Int)], _ deltas: inout [Int64]) {
        spans.removeAll(keepingCapacity: true)
        deltas.removeAll(keepingCapacity: true)
        self.counts.withUnsafeBufferPointer { counts in
            var previous: Int64 = 0
            var lastEnd: Int? = nil  // the index after the last span's end
            var index = 0
            while index < counts.count {
                guard counts[index] != 0 else {
                    index += 1
                    continue
                }
                // A span from here to the last bucket before a run of 3 or more empty ones (or the end).
                var end = index + 1
                var next = end
                while next < counts.count {
                    if counts[next] != 0 {
                        next += 1
                        end = next
                        continue
                    }
                    var zeros = next
                    while zeros < counts.count, counts[zeros] == 0 { zeros += 1 }
                    guard zeros < counts.count, zeros - next <= 2 else { break }
                    next = zeros
                }
                let absolute = self.offset + index
                spans.append((offset: lastEnd.map { absolute - $0 } ?? absolute, length: end - index))
                for position in index..<end {
                    let count = Int64(counts[position])
                    deltas.append(count &- previous)
                    previous = count
                }
                lastEnd = self.offset + end
                index = end
            }
        }
    }
}
