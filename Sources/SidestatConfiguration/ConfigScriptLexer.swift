//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

// The config.js lexer: tokens, comments, numbers and strings as JavaScript reads them.

enum Token: Equatable {
    case punctuator(String)
    case identifier(String)
    case number(Double)
    case string(String)
    case end

    var text: String {
        switch self {
        case .punctuator(let p): return "`\(p)`"
        case .identifier(let name): return "`\(name)`"
        case .number(let value): return "the number \(JSNumber.string(value))"
        case .string(let value): return "the string \"\(value)\""
        case .end: return "the end of the file"
        }
    }
}

struct Lexer {
    let scalars: [Unicode.Scalar]
    var index = 0
    var line = 1
    var column = 1

    init(_ source: String) {
        self.scalars = Array(source.unicodeScalars)
    }

    struct Position {
        var index: Int
        var line: Int
        var column: Int
    }

    var position: Position { Position(index: self.index, line: self.line, column: self.column) }

    mutating func reset(to position: Position) {
        self.index = position.index
        self.line = position.line
        self.column = position.column
    }

    func peekScalar(_ offset: Int = 0) -> Unicode.Scalar? {
        let i = self.index + offset
        return i < self.scalars.count ? self.scalars[i] : nil
    }

    mutating func advance() -> Unicode.Scalar {
        let scalar = self.scalars[self.index]
        self.index += 1
        if scalar == "\n" {
            self.line += 1
            self.column = 1
        } else {
            self.column += 1
        }
        return scalar
    }

    func error(_ message: String, at position: Position? = nil) -> ConfigScriptError {
        let p = position ?? self.position
        return ConfigScriptError(line: p.line, column: p.column, message: message)
    }

    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F,
            0x3000, 0xFEFF:
            return true
        default:
            return false
        }
    }

    static func isIdentifierStart(_ s: Unicode.Scalar) -> Bool {
        s == "_" || s == "$" || s.properties.isAlphabetic
    }

    static func isIdentifierPart(_ s: Unicode.Scalar) -> Bool {
        isIdentifierStart(s) || ("0"..."9").contains(s)
    }

    /// Skips white space and comments; a regular-expression-free language, so `/` after them is division.
    mutating func skipTrivia() throws(ConfigScriptError) {
        while let s = self.peekScalar() {
            if Self.isWhitespace(s) {
                _ = self.advance()
            } else if s == "/", self.peekScalar(1) == "/" {
                while let c = self.peekScalar(), c != "\n" { _ = self.advance() }
            } else if s == "/", self.peekScalar(1) == "*" {
                let start = self.position
                _ = self.advance()
                _ = self.advance()
                while true {
                    guard let c = self.peekScalar() else { throw self.error("unterminated comment", at: start) }
                    if c == "*", self.peekScalar(1) == "/" {
                        _ = self.advance()
                        _ = self.advance()
                        break
                    }
                    _ = self.advance()
                }
            } else if s == "#", self.index == 0, self.peekScalar(1) == "!" {
                while let c = self.peekScalar(), c != "\n" { _ = self.advance() }
            } else {
                return
            }
        }
    }

    static let punctuators = [
        "===", "!==", "==", "!=", "<=", ">=", "&&", "||", "=>", "{", "}", "[", "]", "(", ")", ",", ":", ";", ".",
        "?", "!", "=", "+", "-", "*", "/", "%", "<", ">",
    ]

    mutating func next() throws(ConfigScriptError) -> (Token, Position) {
        try self.skipTrivia()
        let start = self.position
        guard let s = self.peekScalar() else { return (.end, start) }
        if s == "\"" || s == "'" || s == "`" {
            return (.string(try self.readString()), start)
        }
        if ("0"..."9").contains(s) || (s == "." && self.peekScalar(1).map { ("0"..."9").contains($0) } == true) {
            return (.number(try self.readNumber()), start)
        }
        if Self.isIdentifierStart(s) {
            var name = ""
            while let c = self.peekScalar(), Self.isIdentifierPart(c) { name.unicodeScalars.append(self.advance()) }
            return (.identifier(name), start)
        }
        for punctuator in Self.punctuators {
            let scalars = Array(punctuator.unicodeScalars)
            var matches = true
            for (offset, scalar) in scalars.enumerated() where self.peekScalar(offset) != scalar {
                matches = false
                break
            }
            if matches {
                for _ in scalars { _ = self.advance() }
                return (.punctuator(punctuator), start)
            }
        }
        throw self.error("unexpected character `\(Character(s))`")
    }

    mutating func readNumber() throws(ConfigScriptError) -> Double {
        let start = self.position
        var text = ""
        if self.peekScalar() == "0", let x = self.peekScalar(1), "xXoObB".unicodeScalars.contains(x) {
            text.unicodeScalars.append(self.advance())
            text.unicodeScalars.append(self.advance())
            while let c = self.peekScalar(), c.properties.isASCIIHexDigit { text.unicodeScalars.append(self.advance()) }
        } else {
            while let c = self.peekScalar(), ("0"..."9").contains(c) || c == "." || c == "e" || c == "E" {
                text.unicodeScalars.append(self.advance())
                if (c == "e" || c == "E"), let sign = self.peekScalar(), sign == "+" || sign == "-" {
                    text.unicodeScalars.append(self.advance())
                }
            }
        }
        if let c = self.peekScalar(), Self.isIdentifierPart(c) {
            throw self.error("a number may not be followed by `\(Character(c))`")
        }
        let value = JSValue.string(text).numberValue
        guard !value.isNaN else { throw self.error("`\(text)` is not a number", at: start) }
        return value
    }

    mutating func readString() throws(ConfigScriptError) -> String {
        let start = self.position
        let quote = self.advance()
        var result = ""
        while true {
            guard let c = self.peekScalar() else { throw self.error("unterminated string", at: start) }
            if c == quote {
                _ = self.advance()
                return result
            }
            if quote == "`", c == "$", self.peekScalar(1) == "{" {
                throw self.error("template substitutions (`${...}`) are not supported; use `+`")
            }
            if c == "\n", quote != "`" { throw self.error("unterminated string", at: start) }
            _ = self.advance()
            guard c == "\\" else {
                result.unicodeScalars.append(c)
                continue
            }
            guard let e = self.peekScalar() else { throw self.error("unterminated string", at: start) }
            _ = self.advance()
            switch e {
            case "n": result += "\n"
            case "t": result += "\t"
            case "r": result += "\r"
            case "b": result += "\u{8}"
            case "f": result += "\u{C}"
            case "v": result += "\u{B}"
            case "0": result += "\u{0}"
            case "\n": break  // line continuation
            case "x":
                result.unicodeScalars.append(try self.readHexScalar(digits: 2))
            case "u":
                if self.peekScalar() == "{" {
                    _ = self.advance()
                    var hex = ""
                    while let h = self.peekScalar(), h != "}" { hex.unicodeScalars.append(self.advance()) }
                    _ = self.peekScalar() == nil ? () : { _ = self.advance() }()
                    guard let value = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(value) else {
                        throw self.error("bad \\u{...} escape")
                    }
                    result.unicodeScalars.append(scalar)
                } else {
                    result.unicodeScalars.append(try self.readHexScalar(digits: 4))
                }
            default:
                result.unicodeScalars.append(e)
            }
        }
    }

    mutating func readHexScalar(digits: Int) throws(ConfigScriptError) -> Unicode.Scalar {
        var hex = ""
        for _ in 0..<digits {
            guard let h = self.peekScalar(), h.properties.isASCIIHexDigit else {
                throw self.error("bad escape in a string")
            }
            hex.unicodeScalars.append(self.advance())
        }
        return Unicode.Scalar(UInt32(hex, radix: 16)!) ?? "\u{FFFD}"
    }
}
