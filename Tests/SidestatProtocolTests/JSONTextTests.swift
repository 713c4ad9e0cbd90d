//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import SidestatProtocol
import Testing

struct JSONTextTests {
    @Test("JSON strings as JSON.stringify writes them, and every one reads back as the text it was")
    func roundTrip() throws {
        #expect(JSONText.quoted("a\"b\\c\nd\te\r\u{1}é🔑/") == #""a\"b\\c\nd\te\r\u0001é🔑/""#)
        let alphabet = Array("ab\"\\\n\r\t\u{0}\u{1f}\u{7f} é鍵🔑/")
        for _ in 0..<2_000 {
            let text = String((0..<Int.random(in: 0...20)).map { _ in alphabet.randomElement()! })
            let decoded = try JSONDecoder().decode(String.self, from: Data(JSONText.quoted(text).utf8))
            #expect(decoded == text)
        }
    }
}
