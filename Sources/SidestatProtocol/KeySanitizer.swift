//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Etsy statsd's key sanitizing: runs of white space become `_`, `/` becomes `-`, and everything outside
/// `[a-zA-Z0-9_.;=-]` is removed (non-ASCII letters and invalid UTF-8 included).
public enum KeySanitizer {
    /// True when sanitizing would not change `key`.
    @inlinable @inline(__always)
    public static func isClean(_ key: UnsafeRawBufferPointer) -> Bool {
        for byte in key where !ByteScan.isKeyByte(byte) { return false }
        return true
    }

    /// Writes the sanitized `key` into `output` (at least as large as `key`) and returns its length.
    public static func sanitize(_ key: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int {
        var length = 0
        var inWhitespace = false
        var index = 0
        while index < key.count {
            let whitespace = JSWhitespace.length(key, at: index)
            if whitespace > 0 {
                if !inWhitespace {
                    output[length] = UInt8(ascii: "_")
                    length += 1
                    inWhitespace = true
                }
                index += whitespace
                continue
            }
            inWhitespace = false
            let byte = key[index]
            if byte == UInt8(ascii: "/") {
                output[length] = UInt8(ascii: "-")
                length += 1
            } else if ByteScan.isKeyByte(byte) {
                output[length] = byte
                length += 1
            }
            index += 1
        }
        return length
    }

    /// Sanitizes a key given as a string (the Graphite backend's name part when `keyNameSanitize` is off).
    public static func sanitize(_ key: String) -> String {
        var utf8 = Array(key.utf8)
        return utf8.withUnsafeMutableBytes { input in
            let output = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, input.count), alignment: 1)
            defer { output.deallocate() }
            let count = sanitize(UnsafeRawBufferPointer(input), into: output)
            return String(decoding: UnsafeRawBufferPointer(rebasing: output[0..<count]), as: UTF8.self)
        }
    }
}
