//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration
import Testing

struct ConfigScriptTests {
    static let environment = [
        "HOSTEDGRAPHITE_APIKEY": "abc-123", "PORT": "5000", "STATSD_PORT": "9125", "DEBUG": "true",
        "FLUSH": "20000",
    ]

    func evaluate(_ source: String) throws(ConfigScriptError) -> JSValue {
        try ConfigScript.evaluate(source, environment: Self.environment)
    }

    @Test("reads statsd's own example config: comma-first, a block comment before the object")
    func exampleConfig() throws {
        let value = try self.evaluate(
            """
            /*
            Graphite Required Variables:
              graphiteHost:     hostname or IP of Graphite server
            */
            {
              graphitePort: 2003
            , graphiteHost: "graphite.example.com"
            , port: 8125
            , backends: [ "./backends/graphite" ]
            }
            """)
        #expect(value["graphitePort"] == .number(2003))
        #expect(value["graphiteHost"] == .string("graphite.example.com"))
        #expect(value["backends"] == .array([.string("./backends/graphite")]))
    }

    @Test("reads process.env with defaults, parseInt, arithmetic, comparisons and trailing comments")
    func herokuConfig() throws {
        let value = try self.evaluate(
            """
            {
              port: parseInt(process.env.STATSD_PORT) || 8125,
              mgmt_port: parseInt(process.env.MGMT_PORT, 10) || 8126,
              graphiteHost: process.env.GRAPHITE_HOST || 'carbon.hostedgraphite.com',
              graphite: { legacyNamespace: false, globalPrefix: process.env.HOSTEDGRAPHITE_APIKEY + ".statsd", },
              flushInterval: 10 * 1000,
              other: Number(process.env.FLUSH) / 2 - 1,
              debug: process.env.DEBUG == "true",
              verbose: process.env.VERBOSE === undefined ? false : true,
              dumpMessages: !!process.env.DUMP,
              name: String(42) + '-' + parseFloat("1.5e1px"),
              percentThreshold: [90, 95, 99.9,],
            }; // the end
            /* really */
            """)
        #expect(value["port"] == .number(9125))
        #expect(value["mgmt_port"] == .number(8126))
        #expect(value["graphiteHost"] == .string("carbon.hostedgraphite.com"))
        #expect(value["graphite"]["globalPrefix"] == .string("abc-123.statsd"))
        #expect(value["flushInterval"] == .number(10000))
        #expect(value["other"] == .number(9999))
        #expect(value["debug"] == .bool(true))
        #expect(value["verbose"] == .bool(false))
        #expect(value["dumpMessages"] == .bool(false))
        #expect(value["name"] == .string("42-15"))
        #expect(value["percentThreshold"] == .array([.number(90), .number(95), .number(99.9)]))
    }

    @Test(
        "reads an immediately invoked function with var declarations and one return",
        arguments: [
            "(function() { var key = process.env.HOSTEDGRAPHITE_APIKEY, host = 'carbon'; return { prefix: key, host: host }; })()",
            "(function () {\n  'use strict';\n  var key = process.env.HOSTEDGRAPHITE_APIKEY;\n  let host = 'carbon'\n  return {prefix: key, host: host}\n}())",
            "(() => { const key = process.env.HOSTEDGRAPHITE_APIKEY; const host = 'carbon'; return {prefix: key, host}; })()",
        ])
    func immediatelyInvoked(source: String) throws {
        let value = try self.evaluate(source)
        #expect(value["prefix"] == .string("abc-123"))
        #expect(value["host"] == .string("carbon"))
    }

    @Test("a repeated key keeps its first position and takes the last value, as in JavaScript")
    func repeatedKey() throws {
        let value = try self.evaluate("{ port: 1, debug: true, port: 2 }")
        guard case .object(let object) = value else {
            Issue.record("not an object")
            return
        }
        #expect(object.keys == ["port", "debug"])
        #expect(object["port"] == .number(2))
    }

    @Test("reads JSON, single quotes, escapes and unquoted keys")
    func literals() throws {
        let value = try self.evaluate(#"{"a": 'it\'s', b: "tab\there", 'c-d': [1, -2.5e3, 0x10, null, true]}"#)
        #expect(value["a"] == .string("it's"))
        #expect(value["b"] == .string("tab\there"))
        #expect(value["c-d"] == .array([.number(1), .number(-2500), .number(16), .null, .bool(true)]))
    }

    @Test(
        "stops at anything outside the subset, naming the line, the column and what was found",
        arguments: [
            ("{\n  port: require('os').port\n}", 2, 9, "`require`"),
            ("{ a: /x+/ }", 1, 6, "regular expressions"),
            ("{ a: (function () { for (;;) {} return 1 })() }", 1, 21, "`for`"),
            ("{ a: foo }", 1, 6, "`foo` is not defined"),
            ("{ a: 1 } { b: 2 }", 1, 10, "only one expression"),
            ("{ a: 'unterminated }", 1, 6, "unterminated string"),
            ("{ a: process.exit(1) }", 1, 14, "process.env"),
            ("{ a: Math.max(1, 2) }", 1, 6, "`Math` is not defined"),
        ])
    func rejects(source: String, line: Int, column: Int, message: String) {
        do throws(ConfigScriptError) {
            _ = try self.evaluate(source)
            Issue.record("accepted \(source)")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.column == column, "\(error)")
            #expect(error.message.contains(message), "\(error)")
        }
    }
}

extension ConfigScriptTests {
    @Test(
        "nesting is bounded: 10,000 levels is an error with its place, never a crash; 20 levels read",
        arguments: [("[", "]"), ("{a: ", "}"), ("(", ")"), ("-", ""), ("!", ""), ("true ? ", " : 0")])
    func deepNesting(open: String, close: String) throws {
        let deep = "{a: " + String(repeating: open, count: 10_000) + "1" + String(repeating: close, count: 10_000) + "}"
        #expect(throws: ConfigScriptError.self) { try self.evaluate(deep) }
        do {
            _ = try self.evaluate(deep)
        } catch {
            #expect(error.message == "nested more than 32 levels deep")
            #expect(error.line == 1 && error.column > 1)
        }
        let fine = "{a: " + String(repeating: open, count: 20) + "1" + String(repeating: close, count: 20) + "}"
        #expect(throws: Never.self) { try self.evaluate(fine) }
    }
}
