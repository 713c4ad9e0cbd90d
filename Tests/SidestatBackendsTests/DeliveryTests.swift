//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatBackends
import Synchronization
import Testing

/// The delivery engine with a scripted transport: what is retried, what is never sent twice, the bound, and the
/// final flush's deadlines. No sockets.
struct DeliveryTests {
    struct Payload: DeliveryPayload {
        var id: Int
        var byteCount: Int { 100 }
        var points: Int { 1 }
    }

    /// Sends what the script says: each call takes the next step (deliver `n` payloads then fail, or deliver all).
    final class ScriptedTransport: DeliveryTransport {
        enum Step: Sendable {
            case deliverAll
            /// Confirms `count` payloads, then fails (connected or not).
            case fail(after: Int, connected: Bool)
            /// Refuses the payload with this id for good, delivers the rest.
            case reject(id: Int)
        }

        let steps: Mutex<[Step]>
        /// Every payload id that was confirmed delivered, in order.
        let delivered = Mutex<[Int]>([])
        let calls = Mutex(0)

        init(_ steps: [Step]) { self.steps = Mutex(steps) }

        func send(_ source: DeliverySource<Payload>, _ attempt: DeliveryAttempt) async -> DeliveryFailure? {
            self.calls.withLock { $0 += 1 }
            let step = self.steps.withLock { $0.isEmpty ? .deliverAll : $0.removeFirst() }
            switch step {
            case .deliverAll:
                while let payload = source.next() {
                    source.confirm()
                    self.delivered.withLock { $0.append(payload.id) }
                }
                return nil
            case .fail(let count, let connected):
                for _ in 0..<count {
                    guard let payload = source.next() else { break }
                    source.confirm()
                    self.delivered.withLock { $0.append(payload.id) }
                }
                _ = source.next()  // taken, never confirmed
                return DeliveryFailure("test: failed", connected: connected)
            case .reject(let id):
                while let payload = source.next() {
                    if payload.id == id {
                        source.reject(because: "test: refused \(id)")
                    } else {
                        source.confirm()
                        self.delivered.withLock { $0.append(payload.id) }
                    }
                }
                return nil
            }
        }
    }

    static func fresh(_ ids: [Int]) -> () -> Payload? {
        var iterator = ids.makeIterator()
        return { iterator.next().map { Payload(id: $0) } }
    }

    let logger = Logger(label: "test")

    @Test("what was confirmed is never sent again; the rest goes first with the next flush, in order")
    func retriesOnlyTheRest() async {
        let transport = ScriptedTransport([.fail(after: 2, connected: true)])
        let delivery = Delivery(name: "test", transport: transport, retryBufferBytes: 10_000, startupTime: 0)
        await delivery.deliver(Self.fresh([1, 2, 3, 4]), isFinal: false, deadline: .now + .seconds(5), logger: self.logger)
        #expect(transport.delivered.withLock { $0 } == [1, 2])
        #expect(delivery.statistics.queuedBytes == 200)
        #expect(delivery.statistics.lastException > 0)
        await delivery.deliver(Self.fresh([5, 6]), isFinal: false, deadline: .now + .seconds(5), logger: self.logger)
        #expect(transport.delivered.withLock { $0 } == [1, 2, 3, 4, 5, 6])
        #expect(delivery.statistics.queuedBytes == 0)
        #expect(delivery.statistics.droppedPoints == 0)
        #expect(delivery.isHealthy)
    }

    @Test("past the bound the oldest payloads are dropped and counted; the newest are kept")
    func boundDropsOldest() async {
        let transport = ScriptedTransport([.fail(after: 0, connected: false), .fail(after: 0, connected: false)])
        let delivery = Delivery(name: "test", transport: transport, retryBufferBytes: 300, startupTime: 0)
        await delivery.deliver(Self.fresh([1, 2]), isFinal: false, deadline: .now + .seconds(5), logger: self.logger)
        await delivery.deliver(Self.fresh([3, 4]), isFinal: false, deadline: .now + .seconds(5), logger: self.logger)
        #expect(delivery.statistics.droppedPoints == 1)
        #expect(delivery.statistics.queuedBytes == 300)
        #expect(!delivery.isReachable)
        #expect(!delivery.isHealthy)
        await delivery.deliver(Self.fresh([5]), isFinal: false, deadline: .now + .seconds(5), logger: self.logger)
        // 1 was dropped at the second flush; the rest goes, oldest first, before the new flush.
        #expect(transport.delivered.withLock { $0 } == [2, 3, 4, 5])
        #expect(delivery.statistics.droppedPoints == 1)
        #expect(delivery.isReachable)
    }

    @Test("a payload the upstream refuses for good is dropped and counted, never retried")
    func rejectedIsDropped() async {
        let transport = ScriptedTransport([.reject(id: 2)])
        let delivery = Delivery(name: "test", transport: transport, retryBufferBytes: 10_000, startupTime: 0)
        await delivery.deliver(Self.fresh([1, 2, 3]), isFinal: false, deadline: .now + .seconds(5), logger: self.logger)
        await delivery.deliver(Self.fresh([4]), isFinal: false, deadline: .now + .seconds(5), logger: self.logger)
        #expect(transport.delivered.withLock { $0 } == [1, 3, 4])
        #expect(delivery.statistics.droppedPoints == 1)
        #expect(delivery.statistics.queuedBytes == 0)
    }

    @Test("the final flush sends what earlier flushes left, and retries until it is delivered")
    func finalRetries() async {
        let transport = ScriptedTransport([
            .fail(after: 0, connected: false), .fail(after: 1, connected: true), .fail(after: 0, connected: true),
        ])
        let delivery = Delivery(name: "test", transport: transport, retryBufferBytes: 10_000, startupTime: 0)
        await delivery.deliver(Self.fresh([1, 2]), isFinal: false, deadline: .now + .seconds(5), logger: self.logger)
        // A deadline far beyond the two 200 ms pauses: the end-to-end tests running beside this one can hold the
        // cooperative pool's threads for seconds.
        let delivered = await delivery.deliver(
            Self.fresh([3]), isFinal: true, deadline: .now + .seconds(60), logger: self.logger)
        #expect(transport.delivered.withLock { $0 } == [1, 2, 3])
        #expect(delivered == 3)
        #expect(delivery.statistics.droppedPoints == 0)
    }

    /// Not connected: given up after the 500 ms connect window, long before the 30 s deadline. Connected: still
    /// tried after the window, until the 1.2 s deadline.
    @Test(
        "the final flush gives up on an unreachable upstream after the connect window, on a failing one at the deadline",
        arguments: [(false, 30.0), (true, 1.2)])
    func finalGivesUp(connected: Bool, deadlineSeconds: Double) async {
        let transport = ScriptedTransport(Array(repeating: .fail(after: 0, connected: connected), count: 1000))
        let delivery = Delivery(
            name: "test", transport: transport, retryBufferBytes: 10_000, finalConnectWindow: .milliseconds(500),
            startupTime: 0)
        let start = ContinuousClock.now
        let delivered = await delivery.deliver(
            Self.fresh([1, 2, 3]), isFinal: true, deadline: .now + .milliseconds(Int(deadlineSeconds * 1000)),
            logger: self.logger)
        let elapsed = ContinuousClock.now - start
        #expect(delivered == 0)
        if connected {
            #expect(elapsed >= .milliseconds(900), "gave up after \(elapsed), before the deadline")
        } else {
            #expect(elapsed >= .milliseconds(500) && elapsed < .seconds(15), "gave up after \(elapsed)")
        }
        #expect(delivery.statistics.droppedPoints == 3)
        #expect(transport.calls.withLock { $0 } >= 2)
    }
}
