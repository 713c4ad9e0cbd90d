//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
import SidestatBackends
import SidestatSupport

/// What every listener does with what it receives, in statsd's order: `dumpMessages` logs each line, the forwarders
/// (the repeater) see the packet, the shard parses and aggregates it, and the daemon records the batch (`last_msg_seen`,
/// `bad_lines_seen`) and logs its bad lines, at most 20 a second. One per reader thread or connection.
struct IngestPipeline {
    let aggregator: Aggregator
    let shard: Int
    let state: DaemonState
    let dumpMessages: Bool
    let forwarders: [any PacketForwarder]
    let logger: Logger
    private var limiter = LogRateLimiter()

    init(aggregator: Aggregator, shard: Int, state: DaemonState, dumpMessages: Bool, forwarders: [any PacketForwarder], logger: Logger) {
        self.aggregator = aggregator
        self.shard = shard
        self.state = state
        self.dumpMessages = dumpMessages
        self.forwarders = forwarders
        self.logger = logger
    }

    /// Whether `received` has anything to do (a debug dump or a forwarder), so that a listener can skip the call.
    var seesPackets: Bool { self.dumpMessages || !self.forwarders.isEmpty }

    /// Before ingest: the debug dump and the forwarders, for one packet.
    func received(_ packet: UnsafeRawBufferPointer) {
        if self.dumpMessages {
            for line in packet.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
                self.logger.info("\(String(decoding: line, as: UTF8.self))", metadata: ["statsd.type": "DEBUG"])
            }
        }
        for forwarder in self.forwarders { forwarder.forward(packet) }
    }

    /// After ingest: the batch's figures and its bad lines.
    mutating func ingested(_ report: IngestShard.BatchReport) {
        self.state.recordBatch(badLines: report.badLines)
        if let messages = report.badLineMessages {
            self.limiter.log(messages.lines, suppressed: messages.suppressed, logger: self.logger)
        }
    }

    /// One packet, or a chunk of complete stream lines, all the way.
    mutating func ingest(_ packet: UnsafeRawBufferPointer) {
        self.received(packet)
        self.ingested(self.aggregator.ingest(packet, shard: self.shard))
    }

    /// A line the listener dropped itself (too long): counted and logged as a bad line.
    mutating func badLine(_ message: String) {
        self.state.recordBatch(badLines: 1)
        self.aggregator.countBadLines(1, shard: self.shard)
        self.limiter.log([message], suppressed: 0, logger: self.logger)
    }
}

/// Logs bad lines as statsd does (`DEBUG: Bad line: ...`), at most 20 a second, and says how many it skipped.
struct LogRateLimiter {
    var windowStart = 0
    var loggedInWindow = 0
    var suppressed = 0
    static let perSecond = 20

    mutating func log(_ lines: [String], suppressed extra: Int, logger: Logger) {
        let now = WallClock.unixSeconds()
        if now != self.windowStart {
            if self.suppressed > 0 {
                logger.warning("Bad lines not logged (rate limit)", metadata: ["bad_lines.suppressed": "\(self.suppressed)"])
            }
            self.windowStart = now
            self.loggedInWindow = 0
            self.suppressed = 0
        }
        self.suppressed += extra
        for line in lines {
            if self.loggedInWindow < Self.perSecond {
                logger.info("\(line)", metadata: ["statsd.type": "DEBUG"])
                self.loggedInWindow += 1
            } else {
                self.suppressed += 1
            }
        }
    }
}
