//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatAggregation
import SidestatConfiguration
import SidestatProtocol

extension GraphiteEncoder {
    /// The constant byte strings of one flush, allocated once.
    final class Constants {
        let storage: UnsafeMutableRawBufferPointer
        let ranges: [Range<Int>]
        /// The same ranges as (offset, count) in memory this object owns: read with no reference counting.
        let table: UnsafeMutableBufferPointer<(Int, Int)>

        // Indices into `ranges`.
        static let counterRate = 0
        static let counterCount = 1
        static let timerPrefix = 2
        static let gaugePrefix = 3
        static let setPrefix = 4
        static let suffix = 5
        static let timestamp = 6
        static let rateName = 7
        static let countName = 8
        static let trailer = 9  // numStats, calculationtime, processing_time, 4 × graphiteStats
        static let linePrefix = 16  // before every name: Hosted Graphite's API key
        static let instanceSegment = 17  // `web_1.` before each key (instance in the path)
        static let instanceTag = 18  // `;instance=web.1` after each name (instance as a tag)
        static let queued = 19  // graphiteStats.queued_bytes, graphiteStats.dropped_points
        static let statistics = 21  // then ".<name>" for every timer statistic

        init(_ strings: [[UInt8]]) {
            let total = strings.reduce(0) { $0 + $1.count }
            let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, total), alignment: 8)
            self.storage = storage
            var offset = 0
            var ranges: [Range<Int>] = []
            for string in strings {
                if !string.isEmpty {
                    string.withUnsafeBytes {
                        storage.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
                    }
                }
                ranges.append(offset..<(offset + string.count))
                offset += string.count
            }
            self.ranges = ranges
            self.table = .allocate(capacity: max(1, ranges.count))
            for (index, range) in ranges.enumerated() { self.table[index] = (range.lowerBound, range.count) }
        }

        deinit {
            self.storage.deallocate()
            self.table.deallocate()
        }

        @inline(__always)
        subscript(index: Int) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: self.storage[self.ranges[index]])
        }
    }
}

extension Array where Element == UInt8 {
    /// Appends raw bytes through a typed buffer, which `append(contentsOf:)` copies in one go.
    @inline(__always)
    mutating func appendRaw(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        self.append(contentsOf: UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: bytes.count))
    }
}
