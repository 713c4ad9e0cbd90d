//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatRunner
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// honcho's supervision rules, event by event, without processes or time.
struct SupervisionTests {
    @Test("the first exit stops the others with SIGTERM once, and its code is the exit code")
    func firstExitStopsTheRest() {
        var s = Supervision(names: ["web.1", "worker.1", "clock.1"])
        #expect(s.started(failure: nil) == [])
        #expect(s.handle(.exited(index: 1, code: 3, signal: nil)) == [.say("worker.1 stopped (rc=3)"), .terminate([0, 2])])
        #expect(s.handle(.exited(index: 0, code: 0, signal: SIGTERM)) == [.say("web.1 stopped (rc=-15)")])
        #expect(!s.isFinished)
        // A signal during the stop is reported, changes nothing else.
        #expect(s.handle(.signal(SIGINT)) == [.say("SIGINT received")])
        #expect(s.handle(.exited(index: 2, code: 0, signal: SIGTERM)) == [.say("clock.1 stopped (rc=-15)")])
        #expect(s.isFinished)
        #expect(s.exitCode == 3)
    }

    @Test("a signal stops everything; the code is 128 + the signal", arguments: [(SIGTERM, "SIGTERM", 143), (SIGINT, "SIGINT", 130), (SIGHUP, "SIGHUP", 129)])
    func signalStops(signal: Int32, name: String, code: Int32) {
        var s = Supervision(names: ["web.1", "worker.1"])
        #expect(s.handle(.signal(signal)) == [.say("\(name) received"), .terminate([0, 1])])
        #expect(s.handle(.exited(index: 0, code: 0, signal: nil)) == [.say("web.1 stopped (rc=0)")])
        #expect(s.exitCode == code)
    }

    @Test("the grace period's end kills only what still runs; a graceful shutdown of the group counts as SIGTERM")
    func graceAndShutdown() {
        var s = Supervision(names: ["web.1", "worker.1", "clock.1"])
        #expect(s.handle(.shutdown) == [.terminate([0, 1, 2])])
        #expect(s.handle(.exited(index: 2, code: 0, signal: SIGTERM)) == [.say("clock.1 stopped (rc=-15)")])
        #expect(s.handle(.graceExpired) == [.kill([0, 1])])
        #expect(s.handle(.exited(index: 0, code: 0, signal: SIGKILL)) == [.say("web.1 stopped (rc=-9)")])
        #expect(s.handle(.exited(index: 1, code: 0, signal: SIGKILL)) == [.say("worker.1 stopped (rc=-9)")])
        #expect(s.isFinished)
        #expect(s.exitCode == 143)
    }

    @Test("a process that cannot start stops the ones that did, with exit code 127")
    func failedStart() {
        var s = Supervision(names: ["web.1"])
        #expect(s.started(failure: "worker.1 could not start: No such file") == [
            .say("worker.1 could not start: No such file"), .terminate([0]),
        ])
        #expect(s.handle(.exited(index: 0, code: 0, signal: SIGTERM)) == [.say("web.1 stopped (rc=-15)")])
        #expect(s.exitCode == 127)
    }
}
