//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Remote-Write 1.0's protobuf messages (`prompb`: `WriteRequest`, `TimeSeries`, `Label`, `Sample`, `Histogram`,
/// `BucketSpan`), written field by field into one request's bytes.
struct WriteRequestWriter {
    private(set) var bytes: [UInt8] = []
    /// The time series written, and the samples they carry (a histogram is one).
    private(set) var series = 0
    private(set) var points = 0
    /// Reused between histograms.
    private var scratch: [UInt8] = []
    private var spans: [(offset: Int, length: Int)] = []
    private var deltas: [Int64] = []

    /// The staleness marker: the NaN Prometheus reads as "this series has ended".
    static let staleNaN = Double(bitPattern: 0x7FF0_0000_0000_0002)

    init(capacity: Int = 0) { self.bytes.reserveCapacity(capacity) }

    /// A series' labels as `TimeSeries` field 1 entries: `__name__` = `name`, `labels`, and `le` when given, sorted
    /// by name (`labels` are sorted already).
    static func labels(name: String, _ labels: [PrometheusLabel], le: String? = nil) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(name.utf8.count + 24 + labels.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 6 })
        func write(_ name: String, _ value: String) {
            let nameLength = name.utf8.count
            let valueLength = value.utf8.count
            let inner = 1 + Protobuf.varintLength(UInt64(nameLength)) + nameLength + 1
                + Protobuf.varintLength(UInt64(valueLength)) + valueLength
            out.append(0x0A)  // Label, field 1 of TimeSeries
            Self.append(varint: UInt64(inner), to: &out)
            out.append(0x0A)  // name
            Self.append(varint: UInt64(nameLength), to: &out)
            out.append(contentsOf: name.utf8)
            out.append(0x12)  // value
            Self.append(varint: UInt64(valueLength), to: &out)
            out.append(contentsOf: value.utf8)
        }
        var pending: [(String, String)] = [("__name__", name)]
        if let le { pending.append(("le", le)) }
        var next = 0
        for label in labels {
            while next < pending.count, pending[next].0 < label.name {
                write(pending[next].0, pending[next].1)
                next += 1
            }
            write(label.name, label.value)
        }
        while next < pending.count {
            write(pending[next].0, pending[next].1)
            next += 1
        }
        return out
    }

    static func append(varint value: UInt64, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    /// A series with one float sample.
    mutating func sample(labels: [UInt8], value: Double, timestamp: Int64) {
        // Sample: value (1, fixed64), timestamp (2, varint).
        let timestampBits = UInt64(bitPattern: timestamp)
        self.seriesStart(labels: labels, field: 2, length: 1 + 8 + 1 + Protobuf.varintLength(timestampBits))
        self.key(1, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { self.bytes.append(contentsOf: $0) }
        self.key(2, 0)
        self.varint(timestampBits)
    }

    /// A `TimeSeries` up to its one sample (field 2) or histogram (field 4) of `length` bytes, which follows.
    private mutating func seriesStart(labels: [UInt8], field: Int, length: Int) {
        let seriesLength = labels.count + 1 + Protobuf.varintLength(UInt64(length)) + length
        self.key(1, 2)
        self.varint(UInt64(seriesLength))
        self.bytes.append(contentsOf: labels)
        self.key(field, 2)
        self.varint(UInt64(length))
        self.series += 1
        self.points += 1
    }

    /// A series with one native histogram (integer counts).
    mutating func histogram(
        labels: [UInt8], _ histogram: NativeHistogram, count: UInt64, sum: Double, isReset: Bool, timestamp: Int64
    ) {
        // The Histogram message goes into `scratch` first: its length comes before it.
        self.scratch.removeAll(keepingCapacity: true)
        func key(_ field: Int, _ wireType: UInt8) { self.scratch.append(UInt8(field) << 3 | wireType) }
        func fixed64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { self.scratch.append(contentsOf: $0) } }
        key(1, 0)  // count_int
        Self.append(varint: count, to: &self.scratch)
        key(3, 1)  // sum
        fixed64(sum.bitPattern)
        key(4, 0)  // schema (sint32)
        Self.append(varint: Protobuf.zigzag(Int64(NativeHistogram.schema)), to: &self.scratch)
        key(5, 1)  // zero_threshold
        fixed64(NativeHistogram.zeroThreshold.bitPattern)
        key(6, 0)  // zero_count_int
        Self.append(varint: histogram.zeroCount, to: &self.scratch)
        func write(_ spansField: Int, _ buckets: ExponentialBuckets) {
            guard !buckets.counts.isEmpty else { return }
            buckets.spansAndDeltas(into: &self.spans, &self.deltas)
            for span in self.spans {
                // BucketSpan: offset (1, sint32), length (2, uint32).
                let offset = Protobuf.zigzag(Int64(span.offset))
                let length = UInt64(span.length)
                key(spansField, 2)
                self.scratch.append(UInt8(2 + Protobuf.varintLength(offset) + Protobuf.varintLength(length)))
                key(1, 0)
                Self.append(varint: offset, to: &self.scratch)
                key(2, 0)
                Self.append(varint: length, to: &self.scratch)
            }
            // The deltas, packed (sint64).
            key(spansField + 1, 2)
            Self.append(
                varint: UInt64(self.deltas.reduce(0) { $0 + Protobuf.varintLength(Protobuf.zigzag($1)) }), to: &self.scratch)
            for delta in self.deltas { Self.append(varint: Protobuf.zigzag(delta), to: &self.scratch) }
        }
        write(8, histogram.negative)
        write(11, histogram.positive)
        // ResetHint: YES for the first histogram of a series (it counts from 0 again), NO after.
        key(14, 0)
        self.scratch.append(isReset ? 1 : 2)
        key(15, 0)
        Self.append(varint: UInt64(bitPattern: timestamp), to: &self.scratch)
        self.seriesStart(labels: labels, field: 4, length: self.scratch.count)
        self.bytes.append(contentsOf: self.scratch)
    }

    private mutating func key(_ field: Int, _ wireType: UInt8) { self.bytes.append(UInt8(field) << 3 | wireType) }

    private mutating func varint(_ value: UInt64) { Self.append(varint: value, to: &self.bytes) }
}
