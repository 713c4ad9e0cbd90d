//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// JavaScript's operators, equality and number parsing, as the config evaluator applies them.
extension ConfigScriptParser {
    static func apply(_ op: String, _ a: JSValue, _ b: JSValue) -> JSValue {
        switch op {
        case "||": return a.truthy ? a : b
        case "&&": return a.truthy ? b : a
        case "==": return .bool(looseEquals(a, b))
        case "!=": return .bool(!looseEquals(a, b))
        case "===": return .bool(strictEquals(a, b))
        case "!==": return .bool(!strictEquals(a, b))
        case "<", ">", "<=", ">=":
            let pa = primitive(a)
            let pb = primitive(b)
            if case .string(let x) = pa, case .string(let y) = pb {
                let ux = Array(x.utf16)
                let uy = Array(y.utf16)
                switch op {
                case "<": return .bool(ux.lexicographicallyPrecedes(uy))
                case ">": return .bool(uy.lexicographicallyPrecedes(ux))
                case "<=": return .bool(!uy.lexicographicallyPrecedes(ux))
                default: return .bool(!ux.lexicographicallyPrecedes(uy))
                }
            }
            let x = pa.numberValue
            let y = pb.numberValue
            switch op {
            case "<": return .bool(x < y)
            case ">": return .bool(x > y)
            case "<=": return .bool(x <= y)
            default: return .bool(x >= y)
            }
        case "+":
            let pa = primitive(a)
            let pb = primitive(b)
            if case .string = pa { return .string(pa.stringValue + pb.stringValue) }
            if case .string = pb { return .string(pa.stringValue + pb.stringValue) }
            return .number(pa.numberValue + pb.numberValue)
        case "-": return .number(a.numberValue - b.numberValue)
        case "*": return .number(a.numberValue * b.numberValue)
        case "/": return .number(a.numberValue / b.numberValue)
        default:
            let x = a.numberValue
            let y = b.numberValue
            return .number(x.truncatingRemainder(dividingBy: y))
        }
    }

    /// ToPrimitive for arrays and objects (their string form), identity otherwise.
    static func primitive(_ value: JSValue) -> JSValue {
        switch value {
        case .array, .object: return .string(value.stringValue)
        default: return value
        }
    }

    static func strictEquals(_ a: JSValue, _ b: JSValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        default: return false  // distinct objects are never identical
        }
    }

    static func looseEquals(_ a: JSValue, _ b: JSValue) -> Bool {
        switch (a, b) {
        case (.undefined, .null), (.null, .undefined), (.undefined, .undefined), (.null, .null): return true
        case (.undefined, _), (.null, _), (_, .undefined), (_, .null): return false
        case (.number, .number), (.string, .string), (.bool, .bool): return strictEquals(a, b)
        case (.array, .array), (.object, .object), (.array, .object), (.object, .array): return false
        case (.string(let x), .number(let y)), (.number(let y), .string(let x)):
            return JSValue.string(x).numberValue == y
        case (.bool(let x), _): return looseEquals(.number(x ? 1 : 0), b)
        case (_, .bool(let y)): return looseEquals(a, .number(y ? 1 : 0))
        case (.array, _), (.object, _): return looseEquals(primitive(a), b)
        case (_, .array), (_, .object): return looseEquals(a, primitive(b))
        }
    }

    /// How deep brackets, braces, parentheses, unary operators and `?:` may nest: real files need a handful of
    /// levels, and a hostile one must not exhaust the stack.
    static let maximumDepth = 32

    static func parseInt(_ text: String, radix requested: Int) -> Double {
        var scalars = Substring(text).unicodeScalars.drop { Lexer.isWhitespace($0) }
        var sign = 1.0
        if let first = scalars.first, first == "+" || first == "-" {
            sign = first == "-" ? -1 : 1
            scalars = scalars.dropFirst()
        }
        var radix = requested
        if radix != 0 && (radix < 2 || radix > 36) { return .nan }
        let string = String(String.UnicodeScalarView(scalars))
        var body = Substring(string)
        if radix == 0 || radix == 16, body.hasPrefix("0x") || body.hasPrefix("0X") {
            body = body.dropFirst(2)
            radix = 16
        }
        if radix == 0 { radix = 10 }
        var value = 0.0
        var digits = 0
        for character in body {
            guard let digit = character.hexDigitValue ?? Self.letterDigit(character), digit < radix else { break }
            value = value * Double(radix) + Double(digit)
            digits += 1
        }
        return digits == 0 ? .nan : sign * value
    }

    static func letterDigit(_ character: Character) -> Int? {
        guard let ascii = character.asciiValue, let lower = Character(Unicode.Scalar(ascii)).lowercased().first,
            let value = lower.asciiValue, value >= UInt8(ascii: "a"), value <= UInt8(ascii: "z")
        else { return nil }
        return Int(value - UInt8(ascii: "a")) + 10
    }

    static func parseFloat(_ text: String) -> Double {
        let trimmed = String(String.UnicodeScalarView(Substring(text).unicodeScalars.drop { Lexer.isWhitespace($0) }))
        var best = Double.nan
        // The longest prefix that is a decimal literal (or Infinity).
        var prefix = ""
        for character in trimmed {
            prefix.append(character)
            var utf8 = Array(prefix.utf8)
            let candidate = utf8.withUnsafeMutableBytes { bytes -> Double? in
                let raw = UnsafeRawBufferPointer(bytes)
                guard !raw.isEmpty else { return nil }
                if raw[0] == UInt8(ascii: "+") || raw[0] == UInt8(ascii: "-") {
                    let rest = UnsafeRawBufferPointer(rebasing: raw[1...])
                    if let value = JSNumber.parseUnsignedDecimal(rest) { return raw[0] == UInt8(ascii: "-") ? -value : value }
                    if String(decoding: rest, as: UTF8.self) == "Infinity" {
                        return raw[0] == UInt8(ascii: "-") ? -.infinity : .infinity
                    }
                    return nil
                }
                if String(decoding: raw, as: UTF8.self) == "Infinity" { return .infinity }
                return JSNumber.parseUnsignedDecimal(raw)
            }
            if let candidate { best = candidate }
        }
        return best
    }
}
