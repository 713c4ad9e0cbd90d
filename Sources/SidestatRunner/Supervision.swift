//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// honcho's rules as a state machine, without processes or time: what the supervisor does for each event. The first
/// event that ends a process or asks for a stop sends SIGTERM to every process still running and starts the grace
/// period; when it expires, SIGKILL; the exit code is the first process's (or 128 + the signal).
package struct Supervision: Sendable {
    package enum Event: Sendable, Equatable {
        case exited(index: Int, code: Int32, signal: Int32?)
        case signal(Int32)
        /// The service group is shutting down (the embedded daemon stopped first).
        case shutdown
        case graceExpired
    }

    package enum Action: Sendable, Equatable {
        /// A `system` line.
        case say(String)
        /// SIGTERM to these processes' groups, then start the grace period.
        case terminate([Int])
        /// SIGKILL to these processes' groups.
        case kill([Int])
    }

    package let names: [String]
    package private(set) var exited = Set<Int>()
    package private(set) var exitCode: Int32? = nil
    package private(set) var terminating = false

    /// Every process has exited.
    package var isFinished: Bool { self.exited.count == self.names.count }

    package var running: [Int] { self.names.indices.filter { !self.exited.contains($0) } }

    package init(names: [String]) { self.names = names }

    /// Before the first event: a process that could not start stops the rest at once (exit code 127).
    package mutating func started(failure: String?) -> [Action] {
        guard let failure else { return [] }
        self.exitCode = 127
        return [.say(failure)] + self.startTerminating()
    }

    package mutating func handle(_ event: Event) -> [Action] {
        var actions: [Action] = []
        switch event {
        case .exited(let index, let code, let signal):
            self.exited.insert(index)
            // As honcho (Python's returncode) prints it: -N for a process a signal ended.
            actions.append(.say("\(self.names[index]) stopped (rc=\(signal.map { -$0 } ?? code))"))
            if self.exitCode == nil { self.exitCode = code }
        case .signal(let signal):
            actions.append(.say("\(signal == SIGTERM ? "SIGTERM" : signal == SIGINT ? "SIGINT" : "SIGHUP") received"))
            if self.exitCode == nil { self.exitCode = 128 + signal }
        case .shutdown:
            if self.exitCode == nil { self.exitCode = 143 }
        case .graceExpired:
            if !self.running.isEmpty { actions.append(.kill(self.running)) }
        }
        return actions + self.startTerminating()
    }

    private mutating func startTerminating() -> [Action] {
        guard !self.terminating else { return [] }
        self.terminating = true
        return [.terminate(self.running)]
    }
}
