//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file could not be read: the system's message (`strerror`).
public struct FileReadError: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { self.reason }
}

/// The whole file at `path` as UTF-8 text (invalid bytes become U+FFFD).
public func readTextFile(_ path: String) throws(FileReadError) -> String {
    guard let file = fopen(path, "rb") else { throw FileReadError(reason: String(cString: strerror(errno))) }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count <= 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes all of `text` to the descriptor `fd` (retrying short writes and EINTR; giving up on another error).
public func writeAll(_ fd: Int32, _ text: String) {
    var text = text
    text.withUTF8 { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written <= 0 {
                if written < 0 && errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}

/// One line on standard error (a newline is added when `text` has none).
public func writeStandardError(_ text: String) {
    writeAll(2, text.hasSuffix("\n") ? text : text + "\n")
}

public func writeStandardOutput(_ text: String) {
    writeAll(1, text)
}
