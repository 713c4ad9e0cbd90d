//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// One label of a Prometheus series.
struct PrometheusLabel: Hashable, Sendable {
    var name: String
    var value: String
}

/// How a statsd key becomes a Prometheus metric name and label set, the same for the `/metrics` page and remote
/// write. Whatever a client sends, the result is a series a Prometheus accepts:
///
/// - The metric name keeps `[a-zA-Z0-9_:]`; any other character becomes `_`, and a leading digit gets a `_` before it.
/// - A DogStatsD tag becomes a label. Its name keeps `[a-zA-Z0-9_]` (the rest becomes `_`; an empty name is `_`).
///   The names Prometheus or Sidestat give a meaning (`le`, `quantile`, `job`, `instance`, `sidestat_instance`,
///   remote write's configured `labels`, and any name starting with `__`) become `exported_<name>`, as Prometheus
///   renames a scraped label that clashes with a target label.
/// - A tag without a value (`#canary`, `#k:`) gets the value `true`: an empty value means "no such label" to
///   Prometheus, so the series would merge with the untagged one.
/// - A tag name given twice keeps its last value, as a repeated key in the config file does.
/// - The labels every series carries (`sidestat_instance`, and remote write's `labels`) come last and win; then
///   the labels are sorted by name.
struct PrometheusNaming: Sendable {
    /// The labels every series carries, sorted by name.
    let fixedLabels: [PrometheusLabel]
    /// Label names a tag cannot take.
    let reservedNames: Set<String>

    static let alwaysReserved: Set<String> = ["le", "quantile", "job", "instance", "sidestat_instance"]

    init(instance: String, labels: [PrometheusLabel] = []) {
        var fixed = [PrometheusLabel(name: "sidestat_instance", value: instance)]
        for label in labels where label.name != "sidestat_instance" { fixed.append(label) }
        // An empty value means no label to Prometheus: an empty instance name is left out rather than sent empty.
        fixed.removeAll { $0.value.isEmpty }
        self.fixedLabels = fixed.sorted { $0.name < $1.name }
        self.reservedNames = Self.alwaysReserved.union(labels.map(\.name))
    }

    /// The labels of a key's tags (from `MetricName`), with the fixed labels, sorted and unique.
    func labels(_ tags: [(key: String, value: String)]) -> [PrometheusLabel] {
        var labels: [PrometheusLabel] = []
        labels.reserveCapacity(tags.count + self.fixedLabels.count)
        func set(_ name: String, _ value: String) {
            if let index = labels.firstIndex(where: { $0.name == name }) {
                labels[index].value = value
            } else {
                labels.append(PrometheusLabel(name: name, value: value))
            }
        }
        for tag in tags { set(self.labelName(tag.key), tag.value.isEmpty ? "true" : tag.value) }
        for label in self.fixedLabels { set(label.name, label.value) }
        labels.sort { $0.name < $1.name }
        return labels
    }

    /// A tag's label name: valid, and never one of the reserved names.
    func labelName(_ text: String) -> String {
        var name = Self.cleaned(text, colons: false)
        if name.hasPrefix("__") || self.reservedNames.contains(name) { name = "exported_" + name }
        return name
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`: any other character becomes `_`.
    static func metricName(_ text: String) -> String { Self.cleaned(text, colons: true) }

    /// `text` with every character but `[a-zA-Z0-9_]` (and `:` when `colons`) replaced by one `_`, and a `_` before
    /// a leading digit (or for an empty text).
    static func cleaned(_ text: String, colons: Bool) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count + 1)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"):
                bytes.append(byte)
            case UInt8(ascii: ":") where colons:
                bytes.append(byte)
            case 0x80...0xBF:
                continue  // the rest of a character already replaced (UTF-8 continuation bytes)
            default:
                bytes.append(UInt8(ascii: "_"))
            }
        }
        if bytes.isEmpty || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[0]) {
            bytes.insert(UInt8(ascii: "_"), at: 0)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `{a="b",sidestat_instance="web.1"}`, escaped as the text exposition format requires.
    static func render(_ labels: [PrometheusLabel]) -> String {
        var out = "{"
        for (index, label) in labels.enumerated() {
            if index > 0 { out += "," }
            out += label.name
            out += "=\""
            out += Self.escape(label.value)
            out += "\""
        }
        return out + "}"
    }

    /// A label value in the text format: `\`, `"` and line feeds escaped.
    static func escape(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == 10 }) else {
            return value
        }
        var out = ""
        for character in value.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }
}
