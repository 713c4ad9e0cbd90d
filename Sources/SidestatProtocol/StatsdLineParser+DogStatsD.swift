//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// DogStatsD beyond tags: the trailing fields after a value (`|T`, `|c:`, `|e:`), events and service checks.
extension StatsdLineParser {
    /// Where DogStatsD's trailing fields begin in `line[from..<to]` (`to` when there are none; `from` is the `:` before
    /// a value or the `|` before its type): `|T<unix seconds>`,
    /// `|c:<container id>` and `|e:<external data>`, accepted and not used. Each comes after a value's type, never as
    /// one: in `a:1|c:2|c` (statsd's two values in a line) `c:` is a type and the next value.
    @inlinable @inline(__always)
    static func dogStatsDExtensionStart(_ line: UnsafeRawBufferPointer, from: Int, to end: Int) -> Int {
        var index = from
        var afterValue = true  // the last delimiter seen was ':' (so the next field is a type)
        while index + 2 < end {
            let byte = line[index]
            if byte == UInt8(ascii: ":") {
                afterValue = true
            } else if byte == UInt8(ascii: "|") {
                if !afterValue, Self.isDogStatsDExtension(line, at: index) { return index }
                afterValue = false
            }
            index += 1
        }
        return end
    }

    /// The `|T<unix seconds>` field among the trailing fields from `index` (a `|`), if there is one.
    @inlinable
    static func dogStatsDTimestamp(_ line: UnsafeRawBufferPointer, from index: Int) -> Int? {
        var bar = index
        while bar + 2 < line.count {
            if line[bar] == UInt8(ascii: "|"), line[bar + 1] == UInt8(ascii: "T") {
                var seconds = 0
                var position = bar + 2
                while position < line.count, line[position] &- UInt8(ascii: "0") < 10, seconds < 1 << 40 {
                    seconds = seconds * 10 + Int(line[position] &- UInt8(ascii: "0"))
                    position += 1
                }
                if position > bar + 2 { return seconds }
            }
            bar += 1
        }
        return nil
    }

    /// Whether the field after the `|` at `index` is `T<digit>...`, `c:...` or `e:...`.
    @inlinable @inline(__always)
    static func isDogStatsDExtension(_ line: UnsafeRawBufferPointer, at index: Int) -> Bool {
        guard index + 2 < line.count else { return false }
        let next = line[index + 1]
        if next == UInt8(ascii: "T") { return line[index + 2] &- UInt8(ascii: "0") < 10 }
        return (next == UInt8(ascii: "c") || next == UInt8(ascii: "e")) && line[index + 2] == UInt8(ascii: ":")
    }

    @inlinable @inline(__always)
    static func isDogStatsDEventOrCheck(_ line: UnsafeRawBufferPointer) -> Bool {
        guard line.count >= 4, line[0] == UInt8(ascii: "_") else { return false }
        if line[1] == UInt8(ascii: "e"), line[2] == UInt8(ascii: "{") { return true }
        return line[1] == UInt8(ascii: "s") && line[2] == UInt8(ascii: "c") && line[3] == UInt8(ascii: "|")
    }

    /// An event, `_e{TITLE_LENGTH,TEXT_LENGTH}:TITLE|TEXT[|field...]`, with room for both (lengths in bytes, or in
    /// characters as some clients count them: at least that many bytes), or a service check, `_sc|NAME|STATUS[|...]`
    /// with a name and a status from 0 to 3.
    @usableFromInline
    static func isWellFormedEventOrCheck(_ line: UnsafeRawBufferPointer) -> Bool {
        if line[1] == UInt8(ascii: "s") {
            let nameEnd = ByteScan.firstIndex(of: UInt8(ascii: "|"), in: line, from: 4, to: line.count)
            guard nameEnd > 4, nameEnd + 1 < line.count else { return false }
            let statusEnd = ByteScan.firstIndex(of: UInt8(ascii: "|"), in: line, from: nameEnd + 1, to: line.count)
            return statusEnd == nameEnd + 2 && line[nameEnd + 1] &- UInt8(ascii: "0") <= 3
        }
        var index = 3
        func number(until terminator: UInt8) -> Int? {
            var value = 0
            let start = index
            while index < line.count, line[index] &- UInt8(ascii: "0") < 10, value < 1 << 20 {
                value = value * 10 + Int(line[index] &- UInt8(ascii: "0"))
                index += 1
            }
            guard index > start, index < line.count, line[index] == terminator else { return nil }
            index += 1
            return value
        }
        guard let titleLength = number(until: UInt8(ascii: ",")), let textLength = number(until: UInt8(ascii: "}")),
            index < line.count, line[index] == UInt8(ascii: ":"), titleLength > 0
        else { return false }
        return line.count - index - 1 >= titleLength + 1 + textLength
    }
}
