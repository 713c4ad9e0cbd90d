//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// honcho's output: every line as `HH:MM:SS name.N | text`, names padded to the longest, colours only on a terminal.
/// Each line is one `write(2)` under a lock, so two processes never interleave inside a line.
public final class LinePrinter: Sendable {
    let width: Int
    let prefix: Bool
    let colour: Bool
    let fd: Int32
    private let lock = Mutex<Void>(())

    /// honcho's colour cycle.
    static let colours = [36, 33, 32, 35, 34, 31]

    /// - Parameters:
    ///   - names: every name that will print (processes, `system`, `statsd.1`), for the padding.
    public init(names: [String], prefix: Bool = true, colour: Bool = true, fd: Int32 = 1) {
        self.width = names.map(\.count).max() ?? 0
        self.prefix = prefix
        self.colour = colour && isatty(fd) == 1
        self.fd = fd
    }

    /// Writes `text` (one or more lines; a missing final newline is added) under `name`.
    public func write(_ text: String, name: String, colourIndex: Int? = nil) {
        var out = ""
        let stamp = Self.time()
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast(text.hasSuffix("\n") ? 1 : 0) {
            var prefixText = ""
            if self.prefix {
                prefixText = "\(stamp) \(name.padding(self.width)) | "
                if self.colour, let colourIndex {
                    prefixText = "\u{1B}[0m\u{1B}[\(Self.colours[colourIndex % Self.colours.count])m\(prefixText)\u{1B}[0m"
                }
            }
            out += prefixText + line + "\n"
        }
        self.lock.withLock { _ in
            out.withUTF8 { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(self.fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if written <= 0 {
                        if written < 0 && errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }

    static func time() -> String {
        var now = Glibc.time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}

extension String {
    func padding(_ width: Int) -> String {
        self.count >= width ? self : self + String(repeating: " ", count: width - self.count)
    }
}

/// A `TextOutput` that prints through a `LinePrinter` under one name: how the embedded aggregator's console and log
/// lines appear as `statsd.1`.
public struct PrefixedOutput: TextOutput {
    let printer: LinePrinter
    let name: String
    let colourIndex: Int?

    public init(printer: LinePrinter, name: String, colourIndex: Int?) {
        self.printer = printer
        self.name = name
        self.colourIndex = colourIndex
    }

    public func write(_ text: String) {
        self.printer.write(text, name: self.name, colourIndex: self.colourIndex)
    }
}
