//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// A value as node's `util.inspect` prints it: statsd's console backend hands its flush to `console.log`.
public indirect enum InspectValue: Sendable {
    case number(Double)
    case string(String)
    case array([InspectValue])
    case object([(String, InspectValue)])
}

/// node's `util.inspect` with `console.log`'s settings (depth 2, 80 columns, `compact: 3`), for the values statsd
/// prints: nested objects, arrays, numbers and strings. Array grouping and line breaking follow node's rules.
public struct NodeInspect {
    var depth = 2
    var breakLength = 80
    var compact = 3
    var maxArrayLength = 100
    private var indentationLevel = 0
    private var currentDepth = 0

    public init() {}

    public static func format(_ value: InspectValue, depth: Int = 2) -> String {
        var inspector = NodeInspect()
        inspector.depth = depth
        return inspector.formatValue(value, recurseTimes: 0)
    }

    mutating func formatValue(_ value: InspectValue, recurseTimes: Int) -> String {
        switch value {
        case .number(let number):
            return number == 0 && number.sign == .minus ? "-0" : JSNumber.string(number)
        case .string(let text):
            return Self.quote(text)
        case .array(let items):
            if items.isEmpty { return "[]" }
            if recurseTimes > self.depth { return "[Array]" }
            let level = recurseTimes + 1
            self.currentDepth = level
            var output: [String] = []
            for item in items.prefix(self.maxArrayLength) {
                output.append(self.formatProperty(item, recurseTimes: level))
            }
            if items.count > self.maxArrayLength {
                let more = items.count - self.maxArrayLength
                output.append("... \(more) more item\(more > 1 ? "s" : "")")
            }
            let allNumbers = items.allSatisfy { if case .number = $0 { return true } else { return false } }
            return self.reduceToSingleString(
                output, braces: ("[", "]"), isArray: true, recurseTimes: level, numeric: allNumbers,
                hasMore: items.count > self.maxArrayLength)
        case .object(let pairs):
            if pairs.isEmpty { return "{}" }
            if recurseTimes > self.depth { return "[Object]" }
            let level = recurseTimes + 1
            self.currentDepth = level
            var output: [String] = []
            for (key, item) in pairs {
                output.append(Self.formatKey(key) + ": " + self.formatProperty(item, recurseTimes: level))
            }
            return self.reduceToSingleString(
                output, braces: ("{", "}"), isArray: false, recurseTimes: level, numeric: false, hasMore: false)
        }
    }

    mutating func formatProperty(_ value: InspectValue, recurseTimes: Int) -> String {
        self.indentationLevel += 2
        defer { self.indentationLevel -= 2 }
        return self.formatValue(value, recurseTimes: recurseTimes)
    }

    mutating func reduceToSingleString(
        _ output: [String], braces: (String, String), isArray: Bool, recurseTimes: Int, numeric: Bool,
        hasMore: Bool
    ) -> String {
        var output = output
        let entries = output.count
        if isArray && entries > 6 {
            output = self.groupArrayElements(output, numeric: numeric, hasMore: hasMore)
        }
        if self.currentDepth - recurseTimes < self.compact && entries == output.count {
            let start = output.count + self.indentationLevel + braces.0.count + 10
            if self.isBelowBreakLength(output, start: start) {
                let joined = output.joined(separator: ", ")
                if !joined.contains("\n") {
                    return "\(braces.0) \(joined) \(braces.1)"
                }
            }
        }
        let indentation = "\n" + String(repeating: " ", count: self.indentationLevel)
        return "\(braces.0)\(indentation)  \(output.joined(separator: ",\(indentation)  "))\(indentation)\(braces.1)"
    }

    func isBelowBreakLength(_ output: [String], start: Int) -> Bool {
        var total = output.count + start
        if total + output.count > self.breakLength { return false }
        for entry in output {
            total += entry.count
            if total > self.breakLength { return false }
        }
        return true
    }

    func groupArrayElements(_ output: [String], numeric: Bool, hasMore: Bool) -> [String] {
        var totalLength = 0
        var maxLength = 0
        let outputLength = hasMore ? output.count - 1 : output.count
        let separatorSpace = 2
        var dataLength: [Int] = []
        for index in 0..<outputLength {
            let length = output[index].count
            dataLength.append(length)
            totalLength += length + separatorSpace
            if maxLength < length { maxLength = length }
        }
        let actualMax = maxLength + separatorSpace
        guard actualMax * 3 + self.indentationLevel < self.breakLength,
            Double(totalLength) / Double(actualMax) > 5 || maxLength <= 6
        else { return output }
        let approxCharHeights = 2.5
        let averageBias = (Double(actualMax) - Double(totalLength) / Double(output.count)).squareRoot()
        let biasedMax = max(Double(actualMax) - 3 - averageBias, 1)
        let columns = min(
            Int(((approxCharHeights * biasedMax * Double(outputLength)).squareRoot() / biasedMax).rounded(.toNearestOrAwayFromZero)),
            (self.breakLength - self.indentationLevel) / actualMax,
            self.compact * 4,
            15)
        if columns <= 1 { return output }
        var maxLineLength: [Int] = []
        for column in 0..<columns {
            var lineLength = 0
            var index = column
            while index < output.count {
                if index < dataLength.count, dataLength[index] > lineLength { lineLength = dataLength[index] }
                index += columns
            }
            maxLineLength.append(lineLength + separatorSpace)
        }
        func pad(_ text: String, _ width: Int, start: Bool) -> String {
            let padding = String(repeating: " ", count: max(0, width - text.count))
            return start ? padding + text : text + padding
        }
        var grouped: [String] = []
        var row = 0
        while row < outputLength {
            let end = min(row + columns, outputLength)
            var line = ""
            var index = row
            while index < end - 1 {
                line += pad(output[index] + ", ", maxLineLength[index - row], start: numeric)
                index += 1
            }
            if numeric {
                line += pad(output[index], maxLineLength[index - row] - separatorSpace, start: true)
            } else {
                line += output[index]
            }
            grouped.append(line)
            row += columns
        }
        if hasMore { grouped.append(output[outputLength]) }
        return grouped
    }

    static func formatKey(_ key: String) -> String {
        let bytes = Array(key.utf8)
        let identifier =
            !bytes.isEmpty
            && bytes.enumerated().allSatisfy { index, byte in
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || byte == UInt8(ascii: "_")
                    || (index > 0 && byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            }
        return identifier ? key : quote(key)
    }

    /// node's `strEscape`: single quotes unless the text holds one and no double quote.
    static func quote(_ text: String) -> String {
        var quoteCharacter: Character = "'"
        if text.contains("'") {
            if !text.contains("\"") {
                quoteCharacter = "\""
            } else if !text.contains("`") && !text.contains("${") {
                quoteCharacter = "`"
            }
        }
        var result = String(quoteCharacter)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            case "\u{8}": result += "\\b"
            case "\u{C}": result += "\\f"
            case "\u{B}": result += "\\v"
            case "\\": result += "\\\\"
            default:
                if Character(scalar) == quoteCharacter {
                    result += "\\" + String(quoteCharacter)
                } else if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    result += "\\x" + (hex.count < 2 ? "0" + hex : hex)
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        result.append(quoteCharacter)
        return result
    }
}
