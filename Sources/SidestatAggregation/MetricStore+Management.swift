//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

extension MetricStore {
    // MARK: - Management

    /// Deletes the keys of `kind` named `name`, or starting with `name` minus its `*` when it ends in `.*`
    /// (statsd's `delcounters`). Returns the deleted keys in statsd's order: the exact match, then the others.
    public mutating func delete(kind: MetricKind, matching name: String) -> [String] {
        switch kind {
        case .counter: return Self.delete(&self.counters, matching: name)
        case .timer: return Self.delete(&self.timers, matching: name)
        case .gauge: return Self.delete(&self.gauges, matching: name)
        case .set: return Self.delete(&self.sets, matching: name)
        }
    }

    static func delete<Value>(_ table: inout ByteKeyTable<Value>, matching name: String) -> [String] {
        var exact: [String] = []
        var byPrefix: [String] = []
        let folder: [UInt8]? = name.hasSuffix(".*") ? Array(name.utf8.dropLast()) : nil
        let nameBytes = Array(name.utf8)
        var toRemove = Set<Int>()
        for index in 0..<table.count {
            let key = table.withKey(at: index) { Array($0) }
            if key == nameBytes {
                exact.append(name)
                toRemove.insert(index)
            }
            if let folder, key.starts(with: folder) {
                byPrefix.append(String(decoding: key, as: UTF8.self))
                toRemove.insert(index)
            }
        }
        if !toRemove.isEmpty {
            table.removeAll { index, _ in toRemove.contains(index) }
        }
        return exact + byPrefix
    }
}
