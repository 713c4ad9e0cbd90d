//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

extension SidestatClient {
    /// An event's alert type (DogStatsD `t:`).
    public enum AlertType: String, Sendable {
        case info, success, warning, error
    }

    /// An event's priority (DogStatsD `p:`).
    public enum Priority: String, Sendable {
        case normal, low
    }

    /// A service check's status (DogStatsD's numbers).
    public enum ServiceCheckStatus: Int, Sendable {
        case ok = 0
        case warning = 1
        case critical = 2
        case unknown = 3
    }

    /// Sends a DogStatsD event (`_e{5,6}:title|text|...`). Line breaks in `text` are sent as `\n`, as DogStatsD
    /// expects. Events are never aggregated.
    public func event(
        _ title: String, text: String, alertType: AlertType? = nil, priority: Priority? = nil,
        aggregationKey: String? = nil, sourceType: String? = nil, hostname: String? = nil,
        timestamp: Int? = nil, tags: [String] = []
    ) {
        let title = Self.escaped(title)
        let text = Self.escaped(text)
        var line = "_e{\(title.utf8.count),\(text.utf8.count)}:\(title)|\(text)"
        if let timestamp { line += "|d:\(timestamp)" }
        if let hostname { line += "|h:\(Self.field(hostname))" }
        if let priority { line += "|p:\(priority.rawValue)" }
        if let alertType { line += "|t:\(alertType.rawValue)" }
        if let aggregationKey { line += "|k:\(Self.field(aggregationKey))" }
        if let sourceType { line += "|s:\(Self.field(sourceType))" }
        line += self.tagField(tags)
        self.send(line)
    }

    /// Sends a DogStatsD service check (`_sc|name|status|...`); the message goes last, as DogStatsD expects.
    public func serviceCheck(
        _ name: String, status: ServiceCheckStatus, message: String? = nil, hostname: String? = nil,
        timestamp: Int? = nil, tags: [String] = []
    ) {
        var line = "_sc|\(Self.field(name))|\(status.rawValue)"
        if let timestamp { line += "|d:\(timestamp)" }
        if let hostname { line += "|h:\(Self.field(hostname))" }
        line += self.tagField(tags)
        if let message { line += "|m:" + Self.escaped(message).replacing("|", with: "/").replacing("m:", with: "m\\:") }
        self.send(line)
    }

    private func tagField(_ tags: [String]) -> String {
        let tags = (self.configuration.tags + tags).map(LineFormat.tag)
        return tags.isEmpty ? "" : "|#" + tags.joined(separator: ",")
    }

    private func send(_ line: String) {
        self.sender.append { bytes in
            bytes.append(contentsOf: line.utf8)
            bytes.append(UInt8(ascii: "\n"))
            return true
        }
    }

    /// Line breaks as the two characters `\n` (the lengths in an event's header let a `|` through).
    private static func escaped(_ text: String) -> String {
        text.replacing("\r\n", with: "\\n").replacing("\n", with: "\\n")
    }

    private static func field(_ text: String) -> String {
        String(text.map { "|\n\r".contains($0) ? "_" : $0 })
    }
}
