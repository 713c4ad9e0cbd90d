//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// A configuration file that Sidestat cannot read: where, and what was found.
public struct ConfigScriptError: Error, CustomStringConvertible, Sendable {
    public var line: Int
    public var column: Int
    public var message: String

    public var description: String { "line \(self.line), column \(self.column): \(self.message)" }

    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }
}

/// Evaluates an Etsy statsd `config.js`: the small part of JavaScript that real configuration files use, and
/// nothing else.
///
/// statsd runs its file through `eval('config = ' + data)`. Sidestat never runs code: it reads one expression made
/// of literals (objects, arrays, strings, numbers, `true`, `false`, `null`, `undefined`), `process.env.NAME`,
/// the operators `|| && ! == === != !== < > <= >= ?: + - * / %`, the functions `parseInt`, `parseFloat`,
/// `Number`, `String` and `Boolean`, and an immediately invoked function whose body is `var`/`let`/`const`
/// declarations and one `return`. Comments may appear anywhere, keys may repeat (the last wins). Anything else
/// (`require`, a regular expression, a loop, a call to another function) is an error that names its place.
public struct ConfigScript {
    public static func evaluate(_ source: String, environment: [String: String]) throws(ConfigScriptError) -> JSValue {
        try self.evaluateReportingUnset(source, environment: environment).value
    }

    /// Evaluates `source`, and names the `process.env` variables it read that are not set (their value was
    /// `undefined`), so that a string built from one (`"undefined.statsd"`) can be explained.
    public static func evaluateReportingUnset(
        _ source: String, environment: [String: String]
    ) throws(ConfigScriptError) -> (value: JSValue, unsetVariables: [String]) {
        var parser = Parser(source: source, environment: environment)
        let value = try parser.parseProgram()
        return (value, parser.unsetVariables)
    }
}

private enum Token: Equatable {
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

private struct Lexer {
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

private struct Parser {
    var lexer: Lexer
    var token: Token = .end
    var tokenPosition = Lexer.Position(index: 0, line: 1, column: 1)
    let environment: [String: String]
    /// `process.env` variables read that are not set.
    var unsetVariables: [String] = []
    /// The current nesting (see `maximumDepth`).
    var depth = 0
    var scopes: [[String: JSValue]] = []

    init(source: String, environment: [String: String]) {
        self.lexer = Lexer(source)
        self.environment = environment
    }

    mutating func advance() throws(ConfigScriptError) {
        (self.token, self.tokenPosition) = try self.lexer.next()
    }

    func error(_ message: String) -> ConfigScriptError {
        ConfigScriptError(line: self.tokenPosition.line, column: self.tokenPosition.column, message: message)
    }

    func unexpected(_ expected: String) -> ConfigScriptError {
        self.error("expected \(expected), found \(self.token.text)")
    }

    mutating func expect(_ punctuator: String) throws(ConfigScriptError) {
        guard self.token == .punctuator(punctuator) else { throw self.unexpected("`\(punctuator)`") }
        try self.advance()
    }

    func isPunctuator(_ p: String) -> Bool { self.token == .punctuator(p) }

    mutating func parseProgram() throws(ConfigScriptError) -> JSValue {
        try self.advance()
        if self.token == .end { throw self.error("the file is empty: expected a configuration object") }
        let value = try self.parseExpression()
        while self.isPunctuator(";") { try self.advance() }
        guard self.token == .end else {
            throw self.unexpected("the end of the configuration (only one expression is allowed)")
        }
        return value
    }

    mutating func parseExpression() throws(ConfigScriptError) -> JSValue {
        try self.nested { parser throws(ConfigScriptError) in try parser.parseConditional() }
    }

    mutating func parseConditional() throws(ConfigScriptError) -> JSValue {
        let condition = try self.parseBinary(precedence: 0)
        guard self.isPunctuator("?") else { return condition }
        try self.advance()
        let whenTrue = try self.parseExpression()
        try self.expect(":")
        let whenFalse = try self.parseExpression()
        return condition.truthy ? whenTrue : whenFalse
    }

    static let binaryPrecedence: [String: Int] = [
        "||": 1, "&&": 2, "==": 3, "!=": 3, "===": 3, "!==": 3, "<": 4, ">": 4, "<=": 4, ">=": 4, "+": 5, "-": 5,
        "*": 6, "/": 6, "%": 6,
    ]

    mutating func parseBinary(precedence minimum: Int) throws(ConfigScriptError) -> JSValue {
        var left = try self.parseUnary()
        while case .punctuator(let op) = self.token, let precedence = Self.binaryPrecedence[op], precedence > minimum {
            try self.advance()
            let right = try self.parseBinary(precedence: precedence)
            left = Self.apply(op, left, right)
        }
        return left
    }

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

    /// Counts one level of nesting around `body` (an expression inside brackets, braces, parentheses or `?:`, or
    /// the operand of a unary operator).
    mutating func nested(_ body: (inout Self) throws(ConfigScriptError) -> JSValue) throws(ConfigScriptError) -> JSValue {
        guard self.depth < Self.maximumDepth else {
            throw self.error("nested more than \(Self.maximumDepth) levels deep")
        }
        self.depth += 1
        defer { self.depth -= 1 }
        return try body(&self)
    }

    mutating func parseUnary() throws(ConfigScriptError) -> JSValue {
        if self.isPunctuator("!") {
            try self.advance()
            return .bool(!(try self.nested { parser throws(ConfigScriptError) in try parser.parseUnary() }).truthy)
        }
        if self.isPunctuator("-") {
            try self.advance()
            return .number(-(try self.nested { parser throws(ConfigScriptError) in try parser.parseUnary() }).numberValue)
        }
        if self.isPunctuator("+") {
            try self.advance()
            return .number((try self.nested { parser throws(ConfigScriptError) in try parser.parseUnary() }).numberValue)
        }
        return try self.parsePostfix()
    }

    mutating func parsePostfix() throws(ConfigScriptError) -> JSValue {
        var value = try self.parsePrimary()
        while true {
            if self.isPunctuator(".") {
                try self.advance()
                guard case .identifier(let name) = self.token else { throw self.unexpected("a property name") }
                try self.advance()
                value = try self.member(of: value, name)
            } else if self.isPunctuator("[") {
                try self.advance()
                let key = try self.parseExpression()
                try self.expect("]")
                value = try self.member(of: value, key.stringValue)
            } else if self.isPunctuator("(") {
                throw self.error("only parseInt, parseFloat, Number, String and Boolean can be called")
            } else {
                return value
            }
        }
    }

    func member(of value: JSValue, _ name: String) throws(ConfigScriptError) -> JSValue {
        switch value {
        case .object(let object): return object[name]
        case .array(let items):
            if name == "length" { return .number(Double(items.count)) }
            if let index = Int(name), items.indices.contains(index) { return items[index] }
            return .undefined
        case .string(let text):
            if name == "length" { return .number(Double(text.utf16.count)) }
            return .undefined
        case .undefined, .null:
            throw self.error("cannot read property `\(name)` of \(value.typeDescription)")
        default:
            return .undefined
        }
    }

    mutating func parsePrimary() throws(ConfigScriptError) -> JSValue {
        let token = self.token
        switch token {
        case .number(let value):
            try self.advance()
            return .number(value)
        case .string(let value):
            try self.advance()
            return .string(value)
        case .punctuator("{"):
            return try self.parseObject()
        case .punctuator("["):
            return try self.parseArray()
        case .punctuator("("):
            try self.advance()
            if self.isPunctuator(")") {
                // `() => { ... }`, called after the closing parenthesis around it.
                try self.advance()
                try self.expect("=>")
                guard self.isPunctuator("{") else { throw self.unexpected("`{` (a function body)") }
                self.pendingFunction = self.tokenPosition
                try self.skipBalancedBlock()
                return .undefined
            }
            let inner =
                self.isFunctionStart()
                ? try self.parseFunctionAndMaybeCall(insideParentheses: true) : try self.parseExpression()
            try self.expect(")")
            if self.pendingFunction != nil {
                // `(function () { ... })()`: the call comes after the parentheses.
                try self.expect("(")
                try self.expect(")")
                return try self.runPendingFunction()
            }
            return inner
        case .punctuator("/"):
            throw self.error("regular expressions are not supported in a configuration file")
        case .identifier(let name):
            if self.isFunctionStart() {
                return try self.parseFunctionAndMaybeCall(insideParentheses: false)
            }
            let position = self.tokenPosition
            try self.advance()
            return try self.identifier(name, at: position)
        case .end:
            throw self.error("unexpected end of the file")
        default:
            throw self.unexpected("a value")
        }
    }

    mutating func identifier(_ name: String, at position: Lexer.Position) throws(ConfigScriptError) -> JSValue {
        switch name {
        case "true": return .bool(true)
        case "false": return .bool(false)
        case "null": return .null
        case "undefined": return .undefined
        case "NaN": return .number(.nan)
        case "Infinity": return .number(.infinity)
        case "process":
            try self.expect(".")
            guard case .identifier("env") = self.token else {
                throw self.error("only `process.env` can be read from `process`")
            }
            try self.advance()
            let variable: String
            if self.isPunctuator(".") {
                try self.advance()
                guard case .identifier(let n) = self.token else { throw self.unexpected("a variable name") }
                variable = n
                try self.advance()
            } else if self.isPunctuator("[") {
                try self.advance()
                variable = try self.parseExpression().stringValue
                try self.expect("]")
            } else {
                return .object(JSObject(self.environment.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))
            }
            guard let value = self.environment[variable] else {
                if !self.unsetVariables.contains(variable) { self.unsetVariables.append(variable) }
                return .undefined
            }
            return .string(value)
        case "parseInt", "parseFloat", "Number", "String", "Boolean":
            return try self.callBuiltin(name)
        case "require", "import", "eval", "Function":
            throw ConfigScriptError(
                line: position.line, column: position.column,
                message: "`\(name)` is not allowed: Sidestat reads configuration files without running code")
        case "for", "while", "do", "if", "switch", "function", "new", "class", "this", "throw", "try", "delete",
            "typeof", "void", "instanceof", "in", "var", "let", "const", "return":
            throw ConfigScriptError(
                line: position.line, column: position.column,
                message: "`\(name)` is not supported in a configuration file")
        default:
            for scope in self.scopes.reversed() {
                if let value = scope[name] { return value }
            }
            throw ConfigScriptError(
                line: position.line, column: position.column,
                message: "`\(name)` is not defined (only literals, process.env and declared variables can be used)")
        }
    }

    mutating func callBuiltin(_ name: String) throws(ConfigScriptError) -> JSValue {
        try self.expect("(")
        var arguments: [JSValue] = []
        while !self.isPunctuator(")") {
            arguments.append(try self.parseExpression())
            if self.isPunctuator(",") { try self.advance() } else { break }
        }
        try self.expect(")")
        let first = arguments.first ?? .undefined
        switch name {
        case "Number": return .number(arguments.isEmpty ? 0 : first.numberValue)
        case "String": return .string(arguments.isEmpty ? "" : first.stringValue)
        case "Boolean": return .bool(first.truthy)
        case "parseFloat": return .number(Self.parseFloat(first.stringValue))
        default:
            let radix = arguments.count > 1 ? arguments[1].numberValue : 0
            return .number(Self.parseInt(first.stringValue, radix: radix.isNaN ? 0 : Int(radix)))
        }
    }

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

    mutating func parseObject() throws(ConfigScriptError) -> JSValue {
        try self.expect("{")
        var object = JSObject()
        while !self.isPunctuator("}") {
            let key: String
            switch self.token {
            case .identifier(let name): key = name
            case .string(let text): key = text
            case .number(let value): key = JSNumber.string(value)
            case .punctuator(","):
                throw self.error("unexpected `,` in an object (two commas in a row)")
            default: throw self.unexpected("a property name")
            }
            let keyPosition = self.tokenPosition
            let keyToken = self.token
            try self.advance()
            if case .identifier(let name) = keyToken, self.isPunctuator(",") || self.isPunctuator("}") {
                // `{ host }`: shorthand for `{ host: host }`.
                object[key] = try self.identifier(name, at: keyPosition)
            } else {
                try self.expect(":")
                object[key] = try self.parseExpression()
            }
            if self.isPunctuator(",") {
                try self.advance()
            } else if !self.isPunctuator("}") {
                throw self.unexpected("`,` or `}`")
            }
        }
        try self.advance()
        return .object(object)
    }

    mutating func parseArray() throws(ConfigScriptError) -> JSValue {
        try self.expect("[")
        var items: [JSValue] = []
        while !self.isPunctuator("]") {
            if self.isPunctuator(",") {
                // An elision (`[1,,2]`) is a hole.
                items.append(.undefined)
                try self.advance()
                continue
            }
            items.append(try self.parseExpression())
            if self.isPunctuator(",") {
                try self.advance()
            } else if !self.isPunctuator("]") {
                throw self.unexpected("`,` or `]`")
            }
        }
        try self.advance()
        return .array(items)
    }

    // MARK: - Immediately invoked functions

    /// The body of a function expression seen inside parentheses, waiting for its `()`.
    var pendingFunction: Lexer.Position? = nil

    func isFunctionStart() -> Bool {
        if case .identifier("function") = self.token { return true }
        return false
    }

    /// `function () { body }` followed by `()` (or, inside parentheses, by `)()`), or `() => { body }`.
    mutating func parseFunctionAndMaybeCall(insideParentheses: Bool) throws(ConfigScriptError) -> JSValue {
        try self.advance()  // `function`
        if case .identifier = self.token { try self.advance() }  // an optional name
        try self.expect("(")
        guard self.isPunctuator(")") else {
            throw self.error("a configuration function cannot take parameters")
        }
        try self.advance()
        guard self.isPunctuator("{") else { throw self.unexpected("`{`") }
        // Record where the body starts; run it when the call is seen.
        let bodyStart = self.tokenPosition
        try self.skipBalancedBlock()
        if self.isPunctuator("(") {
            try self.advance()
            try self.expect(")")
            return try self.runFunction(at: bodyStart)
        }
        guard insideParentheses else {
            throw self.error("a function in a configuration file must be called where it is written: `(function () { ... })()`")
        }
        self.pendingFunction = bodyStart
        return .undefined
    }

    mutating func runPendingFunction() throws(ConfigScriptError) -> JSValue {
        let start = self.pendingFunction!
        self.pendingFunction = nil
        return try self.runFunction(at: start)
    }

    mutating func skipBalancedBlock() throws(ConfigScriptError) {
        var depth = 0
        repeat {
            if self.isPunctuator("{") { depth += 1 }
            if self.isPunctuator("}") { depth -= 1 }
            if self.token == .end { throw self.error("unterminated function body") }
            try self.advance()
        } while depth > 0
    }

    /// Runs a function body (`var`/`let`/`const` declarations, then `return`) and leaves the lexer after the call.
    mutating func runFunction(at bodyStart: Lexer.Position) throws(ConfigScriptError) -> JSValue {
        let resume = (self.token, self.tokenPosition, self.lexer.position)
        self.lexer.reset(to: bodyStart)
        try self.advance()
        try self.expect("{")
        self.scopes.append([:])
        defer { self.scopes.removeLast() }
        var result: JSValue = .undefined
        var returned = false
        while !self.isPunctuator("}") {
            switch self.token {
            case .identifier("var"), .identifier("let"), .identifier("const"):
                try self.advance()
                while true {
                    guard case .identifier(let name) = self.token else { throw self.unexpected("a variable name") }
                    try self.advance()
                    var value: JSValue = .undefined
                    if self.isPunctuator("=") {
                        try self.advance()
                        value = try self.parseExpression()
                    }
                    self.scopes[self.scopes.count - 1][name] = value
                    if self.isPunctuator(",") { try self.advance() } else { break }
                }
            case .identifier("return"):
                guard !returned else { throw self.error("only one `return` is allowed") }
                try self.advance()
                result = try self.parseExpression()
                returned = true
            case .string:
                try self.advance()  // a directive such as 'use strict'
            case .punctuator(";"):
                break
            default:
                throw self.error(
                    "a configuration function may only declare variables and return a value; found \(self.token.text)")
            }
            if self.isPunctuator(";") { try self.advance() }
        }
        (self.token, self.tokenPosition) = (resume.0, resume.1)
        self.lexer.reset(to: resume.2)
        return result
    }
}
