//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol
import Testing

/// Records what the parser reports, as text.
struct RecordingSink: StatsdSampleSink {
    var events: [String] = []
    var lines = 0
    var bad = 0

    mutating func lineSeen(_ line: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer) { self.lines += 1 }
    mutating func counter(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double) {
        self.events.append("c \(Self.text(key)) \(JSNumber.string(value)) @\(JSNumber.string(sampleRate))")
    }
    mutating func timer(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double) {
        self.events.append("ms \(Self.text(key)) \(JSNumber.string(value)) @\(JSNumber.string(sampleRate))")
    }
    mutating func distribution(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double) {
        self.events.append("d \(Self.text(key)) \(JSNumber.string(value)) @\(JSNumber.string(sampleRate))")
    }
    mutating func gauge(key: UnsafeRawBufferPointer, value: Double, isDelta: Bool) {
        self.events.append("g \(Self.text(key)) \(isDelta ? "delta " : "")\(JSNumber.string(value))")
    }
    mutating func set(key: UnsafeRawBufferPointer, member: UnsafeRawBufferPointer) {
        self.events.append("s \(Self.text(key)) \(Self.text(member))")
    }
    mutating func badValue(line: UnsafeRawBufferPointer, fields: UnsafeRawBufferPointer) { self.bad += 1 }
    mutating func pointTimestamp(_ unixSeconds: Int) { self.events.append("T\(unixSeconds)") }
    mutating func dogStatsDEvent(_ line: UnsafeRawBufferPointer, isServiceCheck: Bool) {
        self.events.append("\(isServiceCheck ? "check" : "event") \(Self.text(line))")
    }

    static func text(_ bytes: UnsafeRawBufferPointer) -> String { String(decoding: bytes, as: UTF8.self) }

    static func parse(_ datagram: [UInt8], sanitize: Bool = true) -> RecordingSink {
        let parser = StatsdLineParser(sanitizeKeys: sanitize)
        var sink = RecordingSink()
        datagram.withUnsafeBytes { parser.parse($0, into: &sink) }
        return sink
    }

    static func parse(_ text: String, sanitize: Bool = true) -> RecordingSink {
        parse(Array(text.utf8), sanitize: sanitize)
    }
}

struct StatsdLineParserTests {
    @Test(
        "reads each line as Etsy statsd does",
        arguments: [
            ("a:1|c", ["c a 1 @1"]),
            ("a:2|c|@0.5", ["c a 2 @0.5"]),
            ("a:1|c|@1e-1", ["c a 1 @0.1"]),  // DEVIATIONS #4
            ("t:5|ms", ["ms t 5 @1"]),
            ("g:-5|g", ["g g delta -5"]),
            ("g: +5|g", ["g g delta 5"]),  // DEVIATIONS #8
            ("g:5|g", ["g g 5"]),
            ("s:abc|s", ["s s abc"]),
            ("s:|s", ["s s 0"]),
            ("h:3|h", ["c h 3 @1"]),
            ("x:3|", ["c x 3 @1"]),
            ("a:1|c:2|ms", ["c a 1 @1", "ms a 2 @1"]),
            ("a:1|c:2|c", ["c a 1 @1", "c a 2 @1"]),  // `c:` as a type and the next value, not a container id
            // DogStatsD: a distribution is a timer's samples; timestamps, container ids and external data are read
            // past, wherever the tags are.
            ("d:5|d", ["d d 5 @1"]),
            ("d:5|d|@0.5|#env:prod", ["d d;env=prod 5 @0.5"]),
            ("d:-2.5|d", ["d d -2.5 @1"]),  // a distribution is not a duration: it may be negative
            ("x:1|c|T1700000000", ["T1700000000", "c x 1 @1"]),
            ("x:1|c|c:abc", ["c x 1 @1"]),
            ("x:1|c|e:it-1:2", ["c x 1 @1"]),
            ("x:2|c|@0.5|#a:b|T1700000000|c:abc|e:it-123", ["T1700000000", "c x;a=b 2 @0.5"]),
            ("x:2|g|T1700000000|#a:b", ["T1700000000", "g x;a=b 2"]),
            ("x:1.5|c|c:abc|T42", ["T42", "c x 1.5 @1"]),
            ("a:1|c\r", ["c a 1 @1"]),
            ("d:x|s\r", ["s d x"]),  // DEVIATIONS #6
            ("a b/c:1|c", ["c a_b-c 1 @1"]),
            ("caf\u{e9}:1|c", ["c caf 1 @1"]),
            ("x:1|c|#env:prod,role:web", ["c x;env=prod;role=web 1 @1"]),
            ("x:1|c|@0.5|#env:prod|c:abc|T123", ["T123", "c x;env=prod 1 @0.5"]),
            ("x:1|c|#a;b:c", ["c x;a_b=c 1 @1"]),
            ("toString:1|ms", ["ms toString 1 @1"]),  // DEVIATIONS #2
            ("__proto__:1|c", ["c __proto__ 1 @1"]),
            ("d:5|ms|@1|x|y", ["ms d 5 @1"]),
        ])
    func reads(line: String, expected: [String]) {
        let sink = RecordingSink.parse(line)
        #expect(sink.events == expected)
        #expect(sink.bad == 0)
    }

    @Test(
        "counts malformed values as bad lines and keeps the good ones",
        arguments: [
            ("foo", 1, 0), ("foo:1", 1, 0), (":", 1, 0), ("a:1|c|", 1, 0), ("a:1||c", 1, 0), ("a:1|c|0.5", 1, 0),
            ("a:1|c|@", 1, 0), ("a:1|c|@-1", 1, 0), ("a:1|c|@+0.5", 1, 0), ("a:1|c|@ 0.5", 1, 0),
            ("a:1|c|@Infinity", 1, 0), ("a:1|c|@0x10", 1, 0), ("a:1|c|@0", 1, 0), ("t:-1|ms", 1, 0),
            ("t:-5|ms\r", 1, 0), ("a:x|c", 1, 0), ("a:Infinity|c", 1, 0), ("a:1e400|c", 1, 0), ("a:1:2|c", 1, 1),
            ("b:1|c:x|c:3|c", 1, 2), ("c::1|c", 1, 1), ("g:x|g", 1, 0), ("v:1\0|c", 1, 0),
        ])
    func badLines(line: String, bad: Int, good: Int) {
        let sink = RecordingSink.parse(line)
        #expect(sink.bad == bad)
        #expect(sink.events.count == good)
    }

    @Test("splits datagrams on newlines and skips empty lines")
    func lines() {
        let sink = RecordingSink.parse("a:1|c\n\nb:2|c\n")
        #expect(sink.events == ["c a 1 @1", "c b 2 @1"])
        #expect(sink.lines == 2)
    }

    @Test("keeps keys raw when sanitizing is off, tags included")
    func unsanitized() {
        let sink = RecordingSink.parse("a b/c:1|c\nx:1|c|#t:a b", sanitize: false)
        #expect(sink.events == ["c a b/c 1 @1", "c x;t=a b 1 @1"])
    }

    @Test("repairs invalid UTF-8 in set members as node decodes it")
    func members() {
        let sink = RecordingSink.parse(Array("s:a".utf8) + [0xFF] + Array("|s".utf8))
        #expect(sink.events == ["s s a\u{FFFD}"])
    }

    @Test("reports DogStatsD events and service checks as such, never as metrics or bad lines")
    func dogStatsDEvents() {
        let sink = RecordingSink.parse(
            "_e{5,4}:title|text|#a:b\n_sc|check|0\na:1|c\n_e{5,0}:title||d:1700000000|p:low\n_sc|db.up|3|d:1|h:web|#a:b|m:ok")
        #expect(
            sink.events == [
                "event _e{5,4}:title|text|#a:b", "check _sc|check|0", "c a 1 @1", "event _e{5,0}:title||d:1700000000|p:low",
                "check _sc|db.up|3|d:1|h:web|#a:b|m:ok",
            ])
        #expect(sink.bad == 0)
        #expect(sink.lines == 5)
    }

    @Test(
        "a malformed DogStatsD event or service check is a bad line",
        arguments: ["_e{x,4}:title|text", "_e{5,4}title|text", "_e{5,4}:tit", "_e{0,4}:|text", "_sc|check", "_sc||0",
                    "_sc|check|7", "_sc|check|01"])
    func malformedEvents(line: String) {
        let sink = RecordingSink.parse(line + "\nok:1|c")
        #expect(sink.bad == 1)
        #expect(sink.events == ["c ok 1 @1"])
    }

    @Test("arbitrary bytes never crash the parser, and good lines around them still count")
    func arbitraryBytes() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array("ab:|@#,;.=-+0123456789e \r\t\n/msgch".utf8) + [0, 0x80, 0xC2, 0xA0, 0xE2, 0xFF]
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...120, using: &generator)
            var garbage: [UInt8] = (0..<length).map { _ in
                Bool.random(using: &generator)
                    ? alphabet.randomElement(using: &generator)! : UInt8.random(in: 0...255, using: &generator)
            }
            garbage.removeAll { $0 == UInt8(ascii: "\n") }
            let datagram = Array("good.before:1|c\n".utf8) + garbage + Array("\ngood.after:2|c".utf8)
            let sink = RecordingSink.parse(datagram)
            #expect(sink.events.first == "c good.before 1 @1")
            #expect(sink.events.last == "c good.after 2 @1")
        }
    }

    @Test("UTF-8 repair gives what Swift's (and node's) decoder gives: one U+FFFD per maximal invalid subpart")
    func utf8Repair() {
        var generator = SystemRandomNumberGenerator()
        // Lead bytes, continuation edges and ASCII, so that most sequences are near the boundaries of validity.
        let alphabet: [UInt8] = [
            0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
            0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
        ]
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 * 200, alignment: 8)
        defer { output.deallocate() }
        for _ in 0..<50_000 {
            let length = Int.random(in: 0...40, using: &generator)
            var input: [UInt8] = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }
            if Bool.random(using: &generator) { input += Array("plain ascii run, then more".utf8) }
            let expected = Array(String(decoding: input, as: UTF8.self).utf8)
            let count = input.withUnsafeBytes { UTF8Repair.repair($0, into: output) }
            #expect(Array(output[0..<count]) == expected, "input \(input)")
        }
        let valid = Array("κλειδί 鍵 🔑 key".utf8)
        let count = valid.withUnsafeBytes { UTF8Repair.repair($0, into: output) }
        #expect(Array(output[0..<count]) == valid)
    }
}
