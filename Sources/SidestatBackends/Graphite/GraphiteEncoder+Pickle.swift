//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

extension GraphiteEncoder {
    /// Pickle (protocol 0, as statsd writes it): `(S'name'\n(L<ts>L\nS'<value>'\ntta` inside `(l ... .` frames of at
    /// most 500 datapoints (carbon's default limit is 1 MiB a frame), each behind a 4-byte big-endian length.
    mutating func beginPickleItem() {
        if self.pickleItems == 0 {
            self.frameStart = self.buffer.count
            self.buffer.append(contentsOf: [0, 0, 0, 0, UInt8(ascii: "("), UInt8(ascii: "l")])
        }
        self.buffer.append(contentsOf: [UInt8(ascii: "("), UInt8(ascii: "S"), UInt8(ascii: "'")])
    }

    mutating func endPickleItem(_ value: Double) {
        self.buffer.append(contentsOf: Array("'\n(L".utf8))
        JSNumber.appendInteger(Int64(self.data.timestamp), to: &self.buffer)
        self.buffer.append(contentsOf: Array("L\nS'".utf8))
        JSNumber.append(value, to: &self.buffer)
        self.buffer.append(contentsOf: Array("'\ntta".utf8))
        self.pickleItems += 1
        if self.pickleItems == 500 { self.endFrame() }
    }

    /// A pickled string is a quoted literal: escape `\`, `'` and control bytes (raw tags can hold them).
    mutating func escapePickleString(from start: Int) {
        guard self.buffer[start...].contains(where: { $0 == UInt8(ascii: "'") || $0 == UInt8(ascii: "\\") || $0 < 0x20 })
        else { return }
        var escaped: [UInt8] = []
        for byte in self.buffer[start...] {
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
        self.buffer.replaceSubrange(start..., with: escaped)
    }

    mutating func endFrame() {
        guard self.pickle, self.pickleItems > 0 else { return }
        self.buffer.append(UInt8(ascii: "."))
        let length = UInt32(self.buffer.count - self.frameStart - 4)
        self.buffer[self.frameStart] = UInt8(truncatingIfNeeded: length >> 24)
        self.buffer[self.frameStart + 1] = UInt8(truncatingIfNeeded: length >> 16)
        self.buffer[self.frameStart + 2] = UInt8(truncatingIfNeeded: length >> 8)
        self.buffer[self.frameStart + 3] = UInt8(truncatingIfNeeded: length)
        self.pickleItems = 0
    }
}
