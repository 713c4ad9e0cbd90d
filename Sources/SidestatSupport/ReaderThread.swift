//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestat
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A dedicated OS thread for a blocking loop (a UDP reader), whose end an async caller can await.
///
/// Ingest threads must never wait for the cooperative pool, and the pool must never block on a socket: the
/// reader loops run here, and services await `finished()`.
public final class ReaderThread: Sendable {
    private struct State {
        var done = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    private let body: @Sendable () -> Void
    private let name: String

    public init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }

    /// Starts the thread. The thread holds a reference to `self` until its body returns.
    public func start() {
        Self.spawn(self)
    }

    nonisolated private static func spawn(_ thread: ReaderThread) {
        let context = Unmanaged.passRetained(thread).toOpaque()
        var handle = pthread_t()
        let result = pthread_create(
            &handle, nil,
            { context in
                let thread = Unmanaged<ReaderThread>.fromOpaque(context!).takeRetainedValue()
                thread.name.withCString { sidestat_set_thread_name($0) }
                thread.body()
                thread.finish()
                return nil
            }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
        pthread_detach(handle)
    }

    private func finish() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Whether the thread's body has returned.
    public var isFinished: Bool { self.state.withLock { $0.done } }

    /// Returns once the thread's body has returned.
    public func finished() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = self.state.withLock { state -> Bool in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Runs `body` on a thread of its own and returns its result: blocking I/O (a socket with deadlines, a libcurl
    /// request) kept off the cooperative pool.
    public static func run<Result: Sendable>(name: String, _ body: @escaping @Sendable () -> Result) async -> Result {
        await withCheckedContinuation { continuation in
            ReaderThread(name: name) { continuation.resume(returning: body()) }.start()
        }
    }
}
