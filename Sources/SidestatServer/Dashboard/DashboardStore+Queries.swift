//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol
import Synchronization

/// What the dashboard page asks for, as JSON: a page of keys with sparklines, one key's whole history, and health.
extension DashboardStore {
    /// Keys whose name contains `query` (any case), user keys first then statsd's own (`statsd.`), each with its
    /// last value and its last `points` values.
    public func keysJSON(query: String, offset: Int, limit: Int, points: Int, internalPrefix: String = "statsd.") -> String {
        self.state.withLock { state in
            let needle = query.lowercased()
            var names = state.series.keys.filter { needle.isEmpty || $0.lowercased().contains(needle) }
            names.sort { a, b in
                let internalA = a.hasPrefix(internalPrefix)
                let internalB = b.hasPrefix(internalPrefix)
                return internalA != internalB ? !internalA : a < b
            }
            let page = names.dropFirst(max(offset, 0)).prefix(max(limit, 0))
            var out = "{\"time\":\(state.tick >= 0 ? state.times[state.tick % self.slots] : 0),\"interval\":"
            out += JSON.number(state.interval) + ",\"total\":\(names.count),\"keys\":["
            var first = true
            for name in page {
                guard let series = state.series[name] else { continue }
                let values = self.history(series, lane: 0, tick: state.tick, count: points)
                out += first ? "" : ","
                first = false
                out += "{\"name\":" + JSON.string(name) + ",\"kind\":\"\(series.kind.rawValue)\""
                out += ",\"group\":\"\(name.hasPrefix(internalPrefix) ? "statsd" : "user")\""
                out += ",\"last\":" + JSON.number(values.last.map(Double.init) ?? .nan)
                out += ",\"spark\":" + JSON.array(values) + "}"
            }
            return out + "]}"
        }
    }

    /// One key's whole history: flush times, and its lanes (`value`, or a timer's `median`, `p90` and `max`).
    public func seriesJSON(_ name: String) -> String? {
        self.state.withLock { state in
            guard let series = state.series[name] else { return nil }
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
    func history(_ series: Series, lane: Int, tick: Int, count: Int) -> [Float] {
        let count = min(count, self.slots)
        var values: [Float] = []
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

    static func array(_ values: [Float]) -> String {
        "[" + values.map { $0.isFinite ? JSNumber.string(Double($0.description) ?? 0) : "null" }.joined(separator: ",") + "]"
    }
}
