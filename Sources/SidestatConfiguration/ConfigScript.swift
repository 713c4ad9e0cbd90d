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
        var parser = ConfigScriptParser(source: source, environment: environment)
        let value = try parser.parseProgram()
        return (value, parser.unsetVariables)
    }
}

struct ConfigScriptParser {
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
