//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import Synchronization

/// A `LogHandler` that keeps every message, for tests that check what is logged and how often.
public final class LogRecorder: Sendable {
    public struct Entry: Sendable {
        public var level: Logger.Level
        public var message: String
        public var metadata: [String: String]
    }

    private let entries = Mutex<[Entry]>([])

    public init() {}

    public var logger: Logger {
        Logger(label: "test") { _ in Handler(recorder: self) }
    }

    public var all: [Entry] { self.entries.withLock { $0 } }

    /// The entries whose message contains `text`.
    public func matching(_ text: String) -> [Entry] { self.all.filter { $0.message.contains(text) } }

    fileprivate func append(_ entry: Entry) { self.entries.withLock { $0.append(entry) } }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var metadata: [String: String] = [:]
            for (key, value) in self.metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
                metadata[key] = "\(value)"
            }
            self.recorder.append(Entry(level: event.level, message: "\(event.message)", metadata: metadata))
        }
    }
}
