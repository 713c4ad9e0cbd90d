//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// Counts what the parser reports, touching nothing else.
public struct CountingSink: StatsdSampleSink {
    public var count = 0

    public init() {}

    public mutating func lineSeen(_ line: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer) {}
    public mutating func counter(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double) {
        self.count &+= key.count
    }
    public mutating func timer(key: UnsafeRawBufferPointer, value: Double, sampleRate: Double) { self.count &+= 1 }
    public mutating func gauge(key: UnsafeRawBufferPointer, value: Double, isDelta: Bool) { self.count &+= 1 }
    public mutating func set(key: UnsafeRawBufferPointer, member: UnsafeRawBufferPointer) { self.count &+= 1 }
    public mutating func badValue(line: UnsafeRawBufferPointer, fields: UnsafeRawBufferPointer) {}
    /// Takes every line the parser's hot path offers, as a sink that knew every key would.
    public mutating func knownKeyLine(
        kind: MetricKind, key: ScannedKey, value: Double, inverseRate: Double, isDelta: Bool
    ) -> Bool {
        self.count &+= key.bytes.count
        return true
    }
}
