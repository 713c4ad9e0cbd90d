//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// What the tests read remote write's requests with: a Snappy block decoder and a protobuf reader for `prompb`'s
// `WriteRequest`, written from the formats' descriptions, independent of the encoder they check.

public struct DecodingError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

public enum SnappyDecoder {
    /// Decodes Snappy's block format; throws on any malformed input.
    public static func decode(_ input: [UInt8]) throws -> [UInt8] {
        var position = 0
        func varint() throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard position < input.count, shift < 64 else { throw DecodingError("bad varint") }
                let byte = input[position]
                position += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
        }
        let length = Int(try varint())
        var output: [UInt8] = []
        output.reserveCapacity(length)
        func take(_ count: Int) throws -> Int {
            guard position + count <= input.count else { throw DecodingError("truncated") }
            var value = 0
            for index in 0..<count { value |= Int(input[position + index]) << (8 * index) }
            position += count
            return value
        }
        while position < input.count {
            let tag = input[position]
            position += 1
            switch tag & 3 {
            case 0:
                var count = Int(tag >> 2)
                if count >= 60 { count = try take(count - 59) }
                count += 1
                guard position + count <= input.count else { throw DecodingError("literal past the end") }
                output.append(contentsOf: input[position..<position + count])
                position += count
            default:
                let length: Int
                let offset: Int
                switch tag & 3 {
                case 1:
                    length = 4 + Int((tag >> 2) & 7)
                    offset = Int(tag >> 5) << 8 | (try take(1))
                case 2:
                    length = 1 + Int(tag >> 2)
                    offset = try take(2)
                default:
                    length = 1 + Int(tag >> 2)
                    offset = try take(4)
                }
                guard offset > 0, offset <= output.count else { throw DecodingError("copy offset \(offset) out of range") }
                let start = output.count - offset
                for index in 0..<length { output.append(output[start + index]) }
            }
        }
        guard output.count == length else { throw DecodingError("length \(output.count), header says \(length)") }
        return output
    }
}

/// `prompb.WriteRequest`, as the tests need it.
public struct DecodedWriteRequest {
    public struct Series {
        public var labels: [(name: String, value: String)] = []
        public var samples: [(value: Double, timestamp: Int64)] = []
        public var histograms: [DecodedHistogram] = []

        public var name: String { self.labels.first { $0.name == "__name__" }?.value ?? "" }
        public func label(_ name: String) -> String? { self.labels.first { $0.name == name }?.value }
    }

    public var series: [Series] = []

    public init(_ bytes: [UInt8]) throws {
        var reader = ProtobufReader(bytes[...])
        while let (field, value) = try reader.next() {
            guard field == 1, case .bytes(let data) = value else { continue }
            var series = Series()
            var inner = ProtobufReader(data)
            while let (field, value) = try inner.next() {
                guard case .bytes(let data) = value else { continue }
                switch field {
                case 1:
                    var label = ProtobufReader(data)
                    var name = ""
                    var text = ""
                    while let (field, value) = try label.next() {
                        if case .bytes(let data) = value {
                            if field == 1 { name = String(decoding: data, as: UTF8.self) }
                            if field == 2 { text = String(decoding: data, as: UTF8.self) }
                        }
                    }
                    series.labels.append((name, text))
                case 2:
                    var sample = ProtobufReader(data)
                    var value = 0.0
                    var timestamp: Int64 = 0
                    while let (field, raw) = try sample.next() {
                        if field == 1, case .fixed64(let bits) = raw { value = Double(bitPattern: bits) }
                        if field == 2, case .varint(let v) = raw { timestamp = Int64(bitPattern: v) }
                    }
                    series.samples.append((value, timestamp))
                case 4:
                    series.histograms.append(try DecodedHistogram(data))
                default: break
                }
            }
            self.series.append(series)
        }
    }
}

public struct DecodedHistogram {
    public var count: UInt64 = 0
    public var sum = 0.0
    public var schema = 0
    public var zeroThreshold = 0.0
    public var zeroCount: UInt64 = 0
    public var resetHint = 0
    public var timestamp: Int64 = 0
    /// Bucket index → count, from the spans and deltas.
    public var positive: [Int: Int64] = [:]
    public var negative: [Int: Int64] = [:]

    init(_ data: ArraySlice<UInt8>) throws {
        var reader = ProtobufReader(data)
        var spans: [Int: [(Int, Int)]] = [8: [], 11: []]
        var deltas: [Int: [Int64]] = [9: [], 12: []]
        func unzigzag(_ v: UInt64) -> Int64 { Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1) }
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .varint(let v)): self.count = v
            case (3, .fixed64(let bits)): self.sum = Double(bitPattern: bits)
            case (4, .varint(let v)): self.schema = Int(unzigzag(v))
            case (5, .fixed64(let bits)): self.zeroThreshold = Double(bitPattern: bits)
            case (6, .varint(let v)): self.zeroCount = v
            case (14, .varint(let v)): self.resetHint = Int(v)
            case (15, .varint(let v)): self.timestamp = Int64(bitPattern: v)
            case (8, .bytes(let data)), (11, .bytes(let data)):
                var span = ProtobufReader(data)
                var offset = 0
                var length = 0
                while let (field, value) = try span.next() {
                    if field == 1, case .varint(let v) = value { offset = Int(unzigzag(v)) }
                    if field == 2, case .varint(let v) = value { length = Int(v) }
                }
                spans[field]!.append((offset, length))
            case (9, .bytes(let data)), (12, .bytes(let data)):
                var packed = ProtobufReader(data)
                while !packed.atEnd { deltas[field]!.append(unzigzag(try packed.varint())) }
            default: break
            }
        }
        func buckets(_ spans: [(Int, Int)], _ deltas: [Int64]) throws -> [Int: Int64] {
            var result: [Int: Int64] = [:]
            var index = 0
            var next = 0
            var count: Int64 = 0
            for (number, span) in spans.enumerated() {
                index = number == 0 ? span.0 : index + span.0
                for _ in 0..<span.1 {
                    guard next < deltas.count else { throw DecodingError("fewer deltas than buckets") }
                    count += deltas[next]
                    next += 1
                    if count != 0 { result[index] = count }
                    index += 1
                }
            }
            guard next == deltas.count else { throw DecodingError("more deltas than buckets") }
            return result
        }
        self.negative = try buckets(spans[8]!, deltas[9]!)
        self.positive = try buckets(spans[11]!, deltas[12]!)
    }
}

struct ProtobufReader {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    var data: ArraySlice<UInt8>
    var position: Int

    init(_ data: ArraySlice<UInt8>) {
        self.data = data
        self.position = data.startIndex
    }

    var atEnd: Bool { self.position >= self.data.endIndex }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard self.position < self.data.endIndex, shift < 64 else { throw DecodingError("bad varint") }
            let byte = self.data[self.position]
            self.position += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
    }

    mutating func next() throws -> (Int, Value)? {
        guard !self.atEnd else { return nil }
        let key = try self.varint()
        let field = Int(key >> 3)
        switch key & 7 {
        case 0: return (field, .varint(try self.varint()))
        case 1:
            guard self.position + 8 <= self.data.endIndex else { throw DecodingError("truncated fixed64") }
            var bits: UInt64 = 0
            for index in 0..<8 { bits |= UInt64(self.data[self.position + index]) << (8 * index) }
            self.position += 8
            return (field, .fixed64(bits))
        case 2:
            let length = Int(try self.varint())
            guard self.position + length <= self.data.endIndex else { throw DecodingError("truncated bytes") }
            let slice = self.data[self.position..<self.position + length]
            self.position += length
            return (field, .bytes(slice))
        case 5:
            guard self.position + 4 <= self.data.endIndex else { throw DecodingError("truncated fixed32") }
            var bits: UInt32 = 0
            for index in 0..<4 { bits |= UInt32(self.data[self.position + index]) << (8 * index) }
            self.position += 4
            return (field, .fixed32(bits))
        default: throw DecodingError("wire type \(key & 7)")
        }
    }
}
