//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Log lines in Etsy statsd's format (node's `util.log`): `26 Nov 08:43:22 - INFO: server is up`, then the
/// metadata as `key=value` pairs.
///
/// The metadata key `statsd.type` overrides the level word, so that messages statsd prints as `DEBUG` whatever
/// the level (received lines under `dumpMessages`, bad lines) look as they always did.
public struct StatsdLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let output: any TextOutput
    /// Leave out the date and time (when something else, such as the Procfile runner, prefixes the line).
    let timestamps: Bool

    public init(output: any TextOutput, level: Logger.Level, timestamps: Bool = true) {
        self.output = output
        self.logLevel = level
        self.timestamps = timestamps
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let type: String
        if case .string(let explicit) = merged.removeValue(forKey: "statsd.type") {
            type = explicit
        } else {
            switch event.level {
            case .trace, .debug: type = "DEBUG"
            case .info, .notice: type = "INFO"
            case .warning: type = "WARNING"
            case .error, .critical: type = "ERROR"
            }
        }
        var line = self.timestamps ? Self.utilLogTimestamp() + " - " : ""
        // An empty `statsd.type` prints the message as node's `util.log` alone does (statsd's "reading config file").
        line += type.isEmpty ? "\(event.message)" : "\(type): \(event.message)"
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(value)"
        }
        self.output.write(line + "\n")
    }

    /// node's `util.log` time: day (not padded), month, then `HH:MM:SS`.
    static func utilLogTimestamp() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_mday) \(months[Int(parts.tm_mon)]) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}
