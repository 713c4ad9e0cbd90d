//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Splits a byte stream into lines, looking at each byte once (however long a line grows), with lines bounded:
/// past `maximumLineBytes` a line is cut, marked `[line cut at N bytes]`, and the rest of it skipped.
public struct LineFramer {
    let maximumLineBytes: Int
    private var pending: [UInt8] = []
    private var skipping = false
    /// Lines that were cut.
    public private(set) var cutLines = 0

    public init(maximumLineBytes: Int) {
        self.maximumLineBytes = maximumLineBytes
    }

    /// Takes the next bytes; calls `line` with each complete line (without its `\n` or `\r\n`). A line longer than
    /// the bound is cut there and marked ` [line cut at N bytes]`.
    public mutating func append(_ bytes: UnsafeBufferPointer<UInt8>, _ line: (String) -> Void) {
        let maximum = self.maximumLineBytes
        self.append(bytes) { text, cut in line(cut ? text + " [line cut at \(maximum) bytes]" : text) }
    }

    /// Takes the next bytes; calls `line` with each complete line and whether it was cut at the bound (then `text`
    /// is its first `maximumLineBytes` bytes, and the rest up to the newline is skipped).
    public mutating func append(_ bytes: UnsafeBufferPointer<UInt8>, _ line: (_ text: String, _ cut: Bool) -> Void) {
        var start = 0
        while start < bytes.count {
            let rest = UnsafeBufferPointer(rebasing: bytes[start...])
            guard let offset = rest.firstIndex(of: UInt8(ascii: "\n")) else {
                self.take(rest, line)
                return
            }
            let newline = start + offset
            self.take(UnsafeBufferPointer(rebasing: bytes[start..<newline]), line)
            if self.skipping {
                self.skipping = false
            } else {
                if self.pending.last == UInt8(ascii: "\r") { self.pending.removeLast() }
                line(String(decoding: self.pending, as: UTF8.self), false)
            }
            self.pending.removeAll(keepingCapacity: true)
            start = newline + 1
        }
    }

    /// The end of the stream: a last line without a newline still counts.
    public mutating func finish(_ line: (String) -> Void) {
        if !self.pending.isEmpty && !self.skipping { line(String(decoding: self.pending, as: UTF8.self)) }
        self.pending = []
        self.skipping = false
    }

    private mutating func take(_ bytes: UnsafeBufferPointer<UInt8>, _ line: (String, Bool) -> Void) {
        guard !self.skipping else { return }
        let room = self.maximumLineBytes - self.pending.count
        guard bytes.count > room else {
            self.pending.append(contentsOf: bytes)
            return
        }
        self.pending.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[..<room]))
        line(String(decoding: self.pending, as: UTF8.self), true)
        self.pending.removeAll(keepingCapacity: true)
        self.skipping = true
        self.cutLines += 1
    }
}
