//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Testing

/// The line framer (child output, management commands): lines however the bytes arrive, bounded, each byte looked at once.
struct LineFramerTests {
    func frame(_ chunks: [String], maximum: Int = 16) -> (lines: [String], cut: Int) {
        var framer = LineFramer(maximumLineBytes: maximum)
        var lines: [String] = []
        for chunk in chunks {
            Array(chunk.utf8).withUnsafeBufferPointer { framer.append($0) { lines.append($0) } }
        }
        framer.finish { lines.append($0) }
        return (lines, framer.cutLines)
    }

    @Test("lines split anywhere across reads come out whole; CRLF and a last line without newline")
    func splits() {
        #expect(self.frame(["ab", "c\nde", "f\r\n", "\ng", "h"]).lines == ["abc", "def", "", "gh"])
    }

    @Test("a line past the bound is cut once, marked, and the rest of it skipped; the next line is whole")
    func bounded() {
        let long = String(repeating: "x", count: 40)
        let (lines, cut) = self.frame([long.prefix(10) + "", long.dropFirst(10) + "\nnext\n"])
        #expect(lines == [String(repeating: "x", count: 16) + " [line cut at 16 bytes]", "next"])
        #expect(cut == 1)
    }

    @Test("50 MB without a newline: one cut line, memory bounded by the limit")
    func hugeLine() {
        var framer = LineFramer(maximumLineBytes: 64 * 1024)
        var lines: [String] = []
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 65_536)
        for _ in 0..<800 {
            chunk.withUnsafeBufferPointer { framer.append($0) { lines.append($0) } }
        }
        Array("\nend\n".utf8).withUnsafeBufferPointer { framer.append($0) { lines.append($0) } }
        #expect(lines.count == 2)
        #expect(lines[0].hasSuffix("[line cut at 65536 bytes]"))
        #expect(lines[1] == "end")
    }
}
