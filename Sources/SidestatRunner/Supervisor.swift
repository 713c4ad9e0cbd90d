//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestat
import ServiceLifecycle
import SidestatBackends
import SidestatServer
import Synchronization
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a set of processes the way honcho does: when any of them exits, or Sidestat gets SIGTERM or SIGINT, every
/// other process group gets SIGTERM, then SIGKILL after the grace period; the exit code is that of the first process
/// that exited (143 or 130 after a signal). No process of the children's groups is left running when `run` returns.
///
/// As a `Service` it comes last in its group: returning ends the group, so the embedded aggregator (earlier in the
/// group) keeps receiving while the children stop, then flushes once more.
public final class Supervisor: Service, Sendable {
    public struct Spec: Sendable {
        public var name: String
        public var arguments: [String]
        public var environment: [String: String]

        public init(name: String, arguments: [String], environment: [String: String]) {
            self.name = name
            self.arguments = arguments
            self.environment = environment
        }
    }

    let specs: [Spec]
    /// nil: children inherit stdout and stderr (`sidestat run`).
    let printer: LinePrinter?
    let grace: Duration
    private let result = Mutex<Int32?>(nil)

    /// The exit code, once `run` has returned.
    public var exitCode: Int32 { self.result.withLock { $0 } ?? 1 }

    public init(specs: [Spec], printer: LinePrinter?, grace: Duration) {
        self.specs = specs
        self.printer = printer
        self.grace = grace
    }

    enum Event: Sendable {
        case exited(index: Int, code: Int32)
        case signal(Int32)
        case shutdown
        case graceExpired
    }

    func system(_ text: String) {
        self.printer?.write(text, name: "system")
    }

    public func run() async throws {
        // Orphans of the children (daemonized workers) become our children, so that they can be reaped and checked.
        _ = sidestat_set_child_subreaper()
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        var children: [ChildProcess] = []
        var threads: [ReaderThread] = []
        var firstCode: Int32? = nil
        for (index, spec) in self.specs.enumerated() {
            let child: ChildProcess
            do {
                child = try ChildProcess.spawn(
                    name: spec.name, arguments: spec.arguments, environment: spec.environment,
                    captureOutput: self.printer != nil)
            } catch {
                self.system("\(spec.name) could not start: \(error)")
                firstCode = firstCode ?? 127
                break
            }
            children.append(child)
            self.system("\(spec.name) started (pid=\(child.pid))")
            if let printer = self.printer {
                let reader = ReaderThread(name: "sidestat-out\(index)") {
                    child.readLines { line in printer.write(line, name: spec.name, colourIndex: index) }
                }
                reader.start()
                threads.append(reader)
            }
            let waiter = ReaderThread(name: "sidestat-wait\(index)") {
                continuation.yield(.exited(index: index, code: child.waitForExit()))
            }
            waiter.start()
            threads.append(waiter)
        }
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        var exited = Set<Int>()
        var terminationStarted: ContinuousClock.Instant? = nil
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await signal in signals {
                    continuation.yield(.signal(signal == .sigterm ? SIGTERM : SIGINT))
                }
            }
            await withGracefulShutdownHandler {
                var terminating = false
                func startTerminating() {
                    guard !terminating else { return }
                    terminating = true
                    terminationStarted = ContinuousClock().now
                    self.terminate(children, exited: exited)
                    let grace = self.grace
                    group.addTask {
                        try? await Task.sleep(for: grace)
                        continuation.yield(.graceExpired)
                    }
                }
                if firstCode != nil { startTerminating() }
                var iterator = events.makeAsyncIterator()
                while exited.count < children.count, let event = await iterator.next() {
                    switch event {
                    case .exited(let index, let code):
                        exited.insert(index)
                        self.system("\(children[index].name) stopped (rc=\(code))")
                        if firstCode == nil { firstCode = code }
                    case .signal(let signal):
                        self.system("\(signal == SIGTERM ? "SIGTERM" : "SIGINT") received")
                        if firstCode == nil { firstCode = signal == SIGTERM ? 143 : 130 }
                    case .shutdown:
                        if firstCode == nil { firstCode = 143 }
                    case .graceExpired:
                        self.kill(children, exited: exited)
                    }
                    startTerminating()
                }
            } onGracefulShutdown: {
                continuation.yield(.shutdown)
            }
            group.cancelAll()
        }
        // The direct children have exited, but their groups may not be empty: `sh -c` exits on SIGTERM while the
        // program it started (gunicorn, say) is still shutting down gracefully. Wait for the groups to empty until
        // the grace period ends, then SIGKILL what is left: no child is ever left running.
        let deadline = (terminationStarted ?? ContinuousClock().now) + self.grace
        while children.contains(where: \.groupAlive), ContinuousClock().now < deadline {
            Self.reapOrphans()
            try? await Task.sleep(for: .milliseconds(50))
        }
        for child in children where child.groupAlive {
            self.system("sending SIGKILL to \(child.name)'s process group (pid \(child.pid))")
            child.signalGroup(SIGKILL)
        }
        for _ in 0..<100 where children.contains(where: \.groupAlive) {
            Self.reapOrphans()
            try? await Task.sleep(for: .milliseconds(20))
        }
        for thread in threads { await thread.finished() }
        continuation.finish()
        self.result.withLock { $0 = firstCode ?? 0 }
    }

    /// SIGTERM to every group still running.
    func terminate(_ children: [ChildProcess], exited: Set<Int>) {
        for (index, child) in children.enumerated() where !exited.contains(index) {
            self.system("sending SIGTERM to \(child.name) (pid \(child.pid))")
            child.signalGroup(SIGTERM)
        }
    }

    func kill(_ children: [ChildProcess], exited: Set<Int>) {
        for (index, child) in children.enumerated() where !exited.contains(index) {
            self.system("sending SIGKILL to \(child.name) (pid \(child.pid))")
            child.signalGroup(SIGKILL)
        }
    }

    /// Reaps children that were re-parented to Sidestat (it is their subreaper), without waiting. Called only once
    /// every direct child has been waited for, so it cannot take another waiter's exit status.
    static func reapOrphans() {
        var status: Int32 = 0
        while waitpid(-1, &status, WNOHANG) > 0 {}
    }
}
