//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestatClient
import Glibc
import Synchronization

/// One thread that calls `tick` every interval until stopped. The client owns no event loop and needs no
/// async context, so that any app (or a command-line tool) can use it; the thread sleeps in poll(2) on an eventfd,
/// which `stop` writes to so that shutdown does not wait for the interval.
final class FlushThread: Sendable {
    private let wakeup: Int32
    private let thread = Mutex<pthread_t?>(nil)
    private let stopped = Atomic<Bool>(false)

    init(interval: Duration, tick: @escaping @Sendable () -> Void) {
        self.wakeup = sidestat_client_eventfd()
        let milliseconds = Int32(clamping: max(interval.components.seconds * 1000
            + interval.components.attoseconds / 1_000_000_000_000_000, 1))
        let context = Context(wakeup: self.wakeup, stopped: self, interval: milliseconds, tick: tick)
        let box = Unmanaged.passRetained(context).toOpaque()
        var thread = pthread_t()
        if pthread_create(&thread, nil, { argument in
            let context = Unmanaged<Context>.fromOpaque(argument!).takeRetainedValue()
            context.run()
            return nil
        }, box) == 0 {
            self.thread.withLock { $0 = thread }
        } else {
            Unmanaged<Context>.fromOpaque(box).release()
        }
    }

    var isStopped: Bool { self.stopped.load(ordering: .acquiring) }

    /// Wakes the thread, waits for it to end (its last tick done), and closes the eventfd. Idempotent.
    func stop() {
        guard !self.stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var one: UInt64 = 1
        _ = write(self.wakeup, &one, 8)
        if let thread = self.thread.withLock({ $0 }) {
            if pthread_equal(thread, pthread_self()) == 0 { pthread_join(thread, nil) }
        }
        _ = close(self.wakeup)
    }

    private final class Context: Sendable {
        let wakeup: Int32
        let stopped: FlushThread
        let interval: Int32
        let tick: @Sendable () -> Void

        init(wakeup: Int32, stopped: FlushThread, interval: Int32, tick: @escaping @Sendable () -> Void) {
            self.wakeup = wakeup
            self.stopped = stopped
            self.interval = interval
            self.tick = tick
        }

        func run() {
            var descriptor = pollfd(fd: self.wakeup, events: Int16(POLLIN), revents: 0)
            while !self.stopped.isStopped {
                _ = poll(&descriptor, 1, self.interval)
                if self.stopped.isStopped { return }
                self.tick()
            }
        }
    }
}
