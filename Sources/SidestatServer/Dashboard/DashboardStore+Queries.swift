//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol
import Synchronization

/// What the dashboard page asks for, as JSON: a page of keys with sparklines, one key's whole history, and health.
extension DashboardStore {
    /// Rows (a key as one type) whose name contains `query` (any case), the user's keys first, then the dyno's
    /// (`processes.`, `dyno.`: what `sidestat start` reports), then statsd's own (`statsd.`), by name then type,
    /// each with its last value and its last `points` values.
    public func keysJSON(query: String, offset: Int, limit: Int, points: Int, internalPrefix: String = "statsd.") -> String {
        self.state.withLock { state in
            let needle = query.lowercased()
            var keys = state.series.keys.filter { needle.isEmpty || $0.name.lowercased().contains(needle) }
            let order = Dictionary(uniqueKeysWithValues: Kind.allCases.enumerated().map { ($1, $0) })
            let groups = ["user": 0, "dyno": 1, "statsd": 2]
            keys.sort { a, b in
                let groupA = groups[Self.group(a.name, internalPrefix)]!
                let groupB = groups[Self.group(b.name, internalPrefix)]!
                if groupA != groupB { return groupA < groupB }
                return a.name != b.name ? a.name < b.name : order[a.kind]! < order[b.kind]!
            }
            let page = keys.dropFirst(max(offset, 0)).prefix(max(limit, 0))
            var out = "{\"time\":\(state.tick >= 0 ? state.times[state.tick % self.slots] : 0),\"interval\":"
            out += JSON.number(state.interval) + ",\"total\":\(keys.count),\"keys\":["
            var first = true
            for key in page {
                guard let series = state.series[key] else { continue }
                let values = self.history(series, lane: 0, tick: state.tick, count: points)
                out += first ? "" : ","
                first = false
                out += "{\"name\":" + JSON.string(key.name) + ",\"kind\":\"\(series.kind.rawValue)\""
                out += ",\"group\":\"\(Self.group(key.name, internalPrefix))\""
                out += ",\"last\":" + JSON.number(values.last ?? .nan)
                out += ",\"spark\":" + JSON.array(values) + "}"
            }
            return out + "]}"
        }
    }

    /// The page's group of a key: statsd's own, the dyno's (process and dyno metrics), or the user's.
    static func group(_ name: String, _ internalPrefix: String) -> String {
        if name.hasPrefix(internalPrefix) { return "statsd" }
        if name.hasPrefix("processes.") || name.hasPrefix("dyno.") { return "dyno" }
        return "user"
    }

    /// One row's whole history: flush times, and its lanes (`value`, or a timer's `median`, `p90` and `max`).
    /// Without a `kind`, the key's first type (counter, gauge, timer, set).
    public func seriesJSON(_ name: String, kind: Kind? = nil) -> String? {
        self.state.withLock { state in
            let kinds = kind.map { [$0] } ?? Kind.allCases
            var found: Series? = nil
            for kind in kinds where found == nil { found = state.series[SeriesKey(name: name, kind: kind)] }
            guard let series = found else { return nil }
            let count = min(state.tick + 1, self.slots)
            var times: [Int] = []
            for index in (state.tick - count + 1)...max(state.tick, 0) where index >= 0 {
                times.append(state.times[index % self.slots])
            }
            var out = "{\"name\":" + JSON.string(name) + ",\"kind\":\"\(series.kind.rawValue)\",\"interval\":"
            out += JSON.number(state.interval) + ",\"times\":[" + times.map(String.init).joined(separator: ",") + "]"
            let lanes = series.kind == .timer ? ["median", "p90", "max"] : ["value"]
            for (lane, label) in lanes.enumerated() {
                out += ",\"\(label)\":" + JSON.array(self.history(series, lane: lane, tick: state.tick, count: count))
            }
            return out + "}"
        }
    }

    /// The history's size and evictions, bad lines, and `backends`' delivery figures.
    public func healthJSON(backends: [(name: String, status: [(name: String, value: Double)])]) -> String {
        self.state.withLock { state in
            var out = "{\"keys\":\(state.series.count),\"bytes\":\(state.bytes),\"budget\":\(self.budgetBytes)"
            out += ",\"evicted\":\(state.evicted),\"flushes\":\(state.tick + 1)"
            out += ",\"badLines\":\(state.badLinesLast),\"badLinesTotal\":\(state.badLinesTotal),\"backends\":["
            out += backends.map { backend in
                "{\"name\":" + JSON.string(backend.name) + ",\"status\":{"
                    + backend.status.map { JSON.string($0.name) + ":" + JSON.number($0.value) }.joined(separator: ",") + "}}"
            }.joined(separator: ",")
            return out + "]}"
        }
    }

    /// The last `count` values of `lane`, oldest first; NaN where the key had none.
    func history(_ series: Series, lane: Int, tick: Int, count: Int) -> [Double] {
        let count = min(count, self.slots)
        var values: [Double] = []
        values.reserveCapacity(count)
        for index in (tick - count + 1)...tick {
            if index < 0 || index > series.lastTick || index <= series.lastTick - self.slots {
                values.append(.nan)
            } else {
                values.append(series.values[lane * self.slots + index % self.slots])
            }
        }
        return values
    }
}

/// The dashboard's JSON values: the management port's quoting and JavaScript's number text (NaN as null).
enum JSON {
    static func string(_ text: String) -> String { JSONText.quoted(text) }

    static func number(_ value: Double) -> String { value.isFinite ? JSNumber.string(value) : "null" }

    static func array(_ values: [Double]) -> String {
        "[" + values.map { $0.isFinite ? JSNumber.string($0) : "null" }.joined(separator: ",") + "]"
    }
}
