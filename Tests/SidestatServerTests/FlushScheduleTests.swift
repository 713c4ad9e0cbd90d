//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatServer
import Testing

/// The flush schedule on a clock the test sets: no waiting.
struct FlushScheduleTests {
    @Test("ticks are multiples of the interval after start-up, and a timer that fires a little early or late keeps them")
    func ticks() {
        let startup = 1_000, interval = 10_000
        #expect(FlushSchedule.untilNextTick(now: startup, startup: startup, interval: interval) == 10_000)
        // The first tick fired 1 ms early: the next is still the second multiple, not a near-duplicate.
        #expect(FlushSchedule.untilNextTick(now: 10_999, startup: startup, interval: interval) == 10_001)
        // ... or 1 ms late.
        #expect(FlushSchedule.untilNextTick(now: 11_001, startup: startup, interval: interval) == 9_999)
        // A flush that ran 6 s over: statsd rounds to the nearest tick and waits for the one after.
        #expect(FlushSchedule.untilNextTick(now: 17_000, startup: startup, interval: interval) == 14_000)
        // Over a simulated hour the ticks stay on the grid, however the wake-ups jitter.
        var now = startup
        var ticks: [Int] = []
        for step in 0..<360 {
            now += FlushSchedule.untilNextTick(now: now, startup: startup, interval: interval)
            ticks.append(now)
            now += [0, 3, 40, 900][step % 4]  // the time the flush itself took
        }
        #expect(ticks == (1...360).map { startup + $0 * interval })
    }

    @Test("the final flush waits for the tick only when the tick leaves time to deliver within the shutdown budget")
    func finalFlush() {
        // A 10 s budget keeps 2 s for delivery.
        #expect(FlushSchedule.finalFlushWait(now: 5_000, startup: 0, interval: 10_000, shutdownBudget: 10_000) == 5_000)
        #expect(FlushSchedule.finalFlushWait(now: 1_000, startup: 0, interval: 10_000, shutdownBudget: 10_000) == nil)
        // A 3 s budget keeps half of it.
        #expect(FlushSchedule.finalFlushWait(now: 9_000, startup: 0, interval: 10_000, shutdownBudget: 3_000) == 1_000)
        #expect(FlushSchedule.finalFlushWait(now: 8_000, startup: 0, interval: 10_000, shutdownBudget: 3_000) == nil)
        // On the tick itself: the next one is a whole interval away.
        #expect(FlushSchedule.finalFlushWait(now: 10_000, startup: 0, interval: 1_000, shutdownBudget: 10_000) == 1_000)
    }
}
