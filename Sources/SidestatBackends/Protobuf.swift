//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Just enough of the protobuf wire format for OTLP and Remote-Write: fields appended to a byte array, nested
/// messages as their encoded bytes.
struct Protobuf {
    var bytes: [UInt8] = []

    mutating func rawVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            self.bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        self.bytes.append(UInt8(value))
    }

    /// The bytes `rawVarint(value)` appends.
    static func varintLength(_ value: UInt64) -> Int {
        var length = 1
        var value = value >> 7
        while value != 0 {
            length += 1
            value >>= 7
        }
        return length
    }

    mutating func tag(_ field: Int, _ wireType: UInt64) { self.rawVarint(UInt64(field) << 3 | wireType) }

    mutating func varint(_ field: Int, _ value: UInt64) {
        self.tag(field, 0)
        self.rawVarint(value)
    }

    /// An `int64` field (a negative value takes ten bytes, as protobuf encodes it).
    mutating func int64(_ field: Int, _ value: Int64) { self.varint(field, UInt64(bitPattern: value)) }

    mutating func sint32(_ field: Int, _ value: Int) {
        let v = Int32(value)
        self.varint(field, UInt64(UInt32(bitPattern: (v << 1) ^ (v >> 31))))
    }

    static func zigzag(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value << 1) ^ (value >> 63)) }

    mutating func fixed64(_ field: Int, _ value: UInt64) {
        self.tag(field, 1)
        self.rawFixed64(value)
    }

    mutating func rawFixed64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { self.bytes.append(contentsOf: $0) }
    }

    mutating func double(_ field: Int, _ value: Double) { self.fixed64(field, value.bitPattern) }

    mutating func lengthDelimited(_ field: Int, _ data: [UInt8]) {
        self.tag(field, 2)
        self.rawVarint(UInt64(data.count))
        self.bytes += data
    }

    mutating func string(_ field: Int, _ text: String) { self.lengthDelimited(field, Array(text.utf8)) }

    mutating func message(_ field: Int, _ data: [UInt8]) { self.lengthDelimited(field, data) }

    mutating func packedUInt64(_ field: Int, _ values: [UInt64]) {
        var packed = Protobuf()
        for value in values { packed.rawVarint(value) }
        self.lengthDelimited(field, packed.bytes)
    }

    mutating func packedSInt64(_ field: Int, _ values: [Int64]) {
        var packed = Protobuf()
        for value in values { packed.rawVarint(Self.zigzag(value)) }
        self.lengthDelimited(field, packed.bytes)
    }
}
