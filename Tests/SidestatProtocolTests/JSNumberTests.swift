//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol
import Testing

struct JSNumberTests {
    @Test(
        "prints numbers as JavaScript's String(number)",
        arguments: [
            (0.0, "0"), (-0.0, "0"), (1, "1"), (-5, "-5"), (1.75, "1.75"), (0.1 + 0.2, "0.30000000000000004"),
            (1e21, "1e+21"), (1e20, "100000000000000000000"), (9_007_199_254_740_993, "9007199254740992"),
            (0.0000001, "1e-7"), (0.000001, "0.000001"), (5e299, "5e+299"), (1e300, "1e+300"),
            (1.4285714285714286, "1.4285714285714286"), (3.3333333333333335, "3.3333333333333335"),
            (28.86607004772212, "28.86607004772212"), (123456789012345680000, "123456789012345680000"),
            (1.5e-10, "1.5e-10"), (.infinity, "Infinity"), (-.infinity, "-Infinity"), (.nan, "NaN"),
            (2.5e-7, "2.5e-7"), (0.5, "0.5"), (100, "100"), (1152921504606846976, "1152921504606847000"),
        ])
    func prints(value: Double, expected: String) {
        #expect(JSNumber.string(value) == expected)
    }

    @Test(
        "reads values as JavaScript's Number(string)",
        arguments: [
            ("1", 1.0), (" 7 ", 7), ("0x10", 16), ("0b101", 5), ("0o17", 15), ("1e3", 1000), (".5", 0.5),
            ("5.", 5), ("-0.5", -0.5), ("+3", 3), ("", 0), ("  ", 0), ("9007199254740993", 9_007_199_254_740_992),
            ("1.7976931348623157e308", 1.7976931348623157e308), ("0.1", 0.1), ("0.30000000000000004", 0.1 + 0.2),
            ("123456789.123456789", 123456789.123456789), ("1e-7", 1e-7), ("\u{00A0}4\u{2003}", 4),
        ])
    func reads(text: String, expected: Double) {
        #expect(Self.parse(text) == expected)
    }

    @Test("rejects what JavaScript reads as NaN", arguments: ["x", "1a", "+0x10", "1,5", "NaN", ".", "e3", "1e", "--1", "0x", "1 2", "1\0"])
    func rejects(text: String) {
        #expect(Self.parse(text) == nil)
    }

    @Test("reads Infinity as JavaScript does")
    func infinity() {
        #expect(Self.parse("Infinity") == .infinity)
        #expect(Self.parse("-Infinity") == -.infinity)
        #expect(Self.parse("1e400") == .infinity)
    }

    @Test("printing then reading gives the same number")
    func roundTrip() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let value = Double(bitPattern: generator.next())
            guard value.isFinite else { continue }
            let text = JSNumber.string(value)
            #expect(Self.parse(text) == (value == 0 ? 0 : value), "\(value) printed as \(text)")
        }
    }

    static func parse(_ text: String) -> Double? {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBytes { JSNumber.parse(UnsafeRawBufferPointer($0)) }
    }
}
