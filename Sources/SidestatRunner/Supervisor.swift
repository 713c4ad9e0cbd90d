//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestat
import ServiceLifecycle
import SidestatSupport
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
        /// Hide the process's output (honcho's `--quiet`); its `started`/`stopped` lines still show.
        public var quiet: Bool

        public init(name: String, arguments: [String], environment: [String: String], quiet: Bool = false) {
            self.name = name
            self.arguments = arguments
            self.environment = environment
            self.quiet = quiet
        }
    }

    let specs: [Spec]
    /// nil: children inherit stdout and stderr (`sidestat run`).
    let printer: LinePrinter?
    public let grace: Duration
    /// Sees every line a process prints, with the process's name (on its reader thread, before the line is
    /// printed): l2met metrics.
    let lineObserver: (@Sendable (_ process: String, _ line: String) -> Void)?
    private let result = Mutex<Int32?>(nil)
    private let processes = Mutex<[(name: String, pid: pid_t)]>([])

    /// The processes running now, by name (`web.1`) and pid: what process metrics sample.
    public var running: [(name: String, pid: pid_t)] { self.processes.withLock { $0 } }

    /// The exit code, once `run` has returned.
    public var exitCode: Int32 { self.result.withLock { $0 } ?? 1 }

    /// SIGTERM, SIGINT and SIGHUP, trapped when the supervisor is made (before anything says it is up), so that a
    /// signal that comes before `run` is handled, not fatal.
    let signals: UnixSignalsSequence

    public init(
        specs: [Spec], printer: LinePrinter?, grace: Duration,
        lineObserver: (@Sendable (_ process: String, _ line: String) -> Void)? = nil
    ) async {
        self.specs = specs
        self.printer = printer
        self.grace = grace
        self.lineObserver = lineObserver
        self.signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
    }

    func system(_ text: String) {
        self.printer?.write(text, name: "system")
    }

    public func run() async throws {
        // Orphans of the children (daemonized workers) become our children, so that they can be reaped and checked.
        _ = sidestat_set_child_subreaper()
        let (events, continuation) = AsyncStream.makeStream(of: Supervision.Event.self)
        var children: [ChildProcess] = []
        var threads: [ReaderThread] = []
        let stopReading = StopFlag()
        var outputReaders: [Int: ReaderThread] = [:]
        // The children are created on a thread of their own that stays until they are all gone: their parent-death
        // signal goes to them when the thread that created them ends.
        let parent = ParentThread()
        defer { parent.release() }
        let specs = self.specs
        let captureOutput = self.printer != nil
        let (spawned, failure) = await parent.run { () -> ([ChildProcess], String?) in
            var spawned: [ChildProcess] = []
            for spec in specs {
                do {
                    spawned.append(
                        try ChildProcess.spawn(
                            name: spec.name, arguments: spec.arguments, environment: spec.environment,
                            captureOutput: captureOutput))
                } catch {
                    return (spawned, "\(spec.name) could not start: \(error)")
                }
            }
            return (spawned, nil)
        }
        for (index, child) in spawned.enumerated() {
            let spec = self.specs[index]
            children.append(child)
            self.system("\(spec.name) started (pid=\(child.pid))")
            if let printer = self.printer {
                let quiet = spec.quiet
                let observer = self.lineObserver
                let reader = ReaderThread(name: "sidestat-out\(index)") { [stopReading] in
                    child.readLines(stopWhen: { stopReading.isSet }) { line in
                        observer?(spec.name, line)
                        if !quiet { printer.write(line, name: spec.name, colourIndex: index) }
                    }
                }
                reader.start()
                threads.append(reader)
                outputReaders[index] = reader
            }
            let waiter = ReaderThread(name: "sidestat-wait\(index)") {
                let status = child.waitForExitStatus()
                continuation.yield(.exited(index: index, code: status.code, signal: status.signal))
            }
            waiter.start()
            threads.append(waiter)
        }
        self.processes.withLock { $0 = children.map { ($0.name, $0.pid) } }
        var supervision = Supervision(names: children.map(\.name))
        // SIGHUP (a closed terminal, a platform's restart) stops the processes as SIGTERM does.
        let signals = self.signals
        var terminationStarted: ContinuousClock.Instant? = nil
        var terminatedGroups = Set<pid_t>()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await signal in signals {
                    continuation.yield(.signal(signal == .sigterm ? SIGTERM : signal == .sigint ? SIGINT : SIGHUP))
                }
            }
            await withGracefulShutdownHandler {
                func perform(_ actions: [Supervision.Action]) {
                    for action in actions {
                        switch action {
                        case .say(let text):
                            self.system(text)
                        case .terminate(let indices):
                            terminationStarted = ContinuousClock().now
                            for index in indices {
                                self.system("sending SIGTERM to \(children[index].name) (pid \(children[index].pid))")
                                children[index].signalGroup(SIGTERM)
                                terminatedGroups.insert(children[index].pid)
                            }
                            let grace = self.grace
                            group.addTask {
                                try? await Task.sleep(for: grace)
                                continuation.yield(.graceExpired)
                            }
                        case .kill(let indices):
                            for index in indices {
                                self.system("sending SIGKILL to \(children[index].name) (pid \(children[index].pid))")
                                children[index].signalGroup(SIGKILL)
                            }
                        }
                    }
                }
                perform(supervision.started(failure: failure))
                var iterator = events.makeAsyncIterator()
                while !supervision.isFinished, let event = await iterator.next() {
                    // The process's last lines come before its `stopped` line, as in honcho (which reads to the end
                    // of the output); a descendant that keeps the output open delays it a second at most.
                    if case .exited(let index, _, _) = event {
                        let pid = children[index].pid
                        self.processes.withLock { $0.removeAll { $0.pid == pid } }
                    }
                    if case .exited(let index, _, _) = event, let reader = outputReaders[index] {
                        let until = ContinuousClock.now + .seconds(1)
                        while !reader.isFinished, ContinuousClock.now < until {
                            try? await Task.sleep(for: .milliseconds(5))
                        }
                    }
                    perform(supervision.handle(event))
                }
            } onGracefulShutdown: {
                continuation.yield(.shutdown)
            }
            group.cancelAll()
        }
        // The direct children have exited, but their groups may not be empty: `sh -c` exits on SIGTERM while the
        // program it started (gunicorn, say) is still shutting down gracefully. And a child may have left a daemon
        // behind (`setsid worker &`), in a group of its own: Sidestat is the subreaper, so such an orphan is now its
        // child, and it is stopped too. Wait for all of them until the grace period ends, then SIGKILL what is left:
        // no descendant is ever left running.
        let deadline = (terminationStarted ?? ContinuousClock().now) + self.grace
        // An orphan in a group that was sent SIGTERM already got it (`sh -c` died first, its `sleep` is on its way).
        for orphan in Self.orphans() where !terminatedGroups.contains(getpgid(orphan)) {
            self.system("sending SIGTERM to pid \(orphan), left behind by a process")
            Self.signalTree(orphan, SIGTERM)
        }
        while children.contains(where: \.groupAlive) || !Self.orphans().isEmpty, ContinuousClock().now < deadline {
            Self.reapOrphans()
            try? await Task.sleep(for: .milliseconds(50))
        }
        for child in children where child.groupAlive {
            self.system("sending SIGKILL to \(child.name)'s process group (pid \(child.pid))")
            child.signalGroup(SIGKILL)
        }
        for orphan in Self.orphans() {
            self.system("sending SIGKILL to pid \(orphan), left behind by a process")
            Self.signalTree(orphan, SIGKILL)
        }
        for _ in 0..<100 where children.contains(where: \.groupAlive) || !Self.orphans().isEmpty {
            Self.reapOrphans()
            try? await Task.sleep(for: .milliseconds(20))
        }
        // The output readers end at the end of their pipes; one held open by something that escaped is given up on
        // after a second: shutdown never waits on a pipe.
        let readersDeadline = ContinuousClock.now + .seconds(1)
        while threads.contains(where: { !$0.isFinished }), ContinuousClock.now < readersDeadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        stopReading.set()
        continuation.finish()
        self.result.withLock { $0 = supervision.exitCode ?? 0 }
    }

    /// The processes re-parented to Sidestat (it is their subreaper): what the children left running when they
    /// exited. Only called once every direct child has exited, so every child of Sidestat's is such an orphan.
    static func orphans() -> [pid_t] {
        let me = getpid()
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var found: [pid_t] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = pid_t(name), let stat = Self.readSmallFile("/proc/\(name)/stat"),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
            // state, ppid: a zombie waits to be reaped, not signalled.
            if fields.count > 2, fields[0] != "Z", pid_t(fields[1]) == me { found.append(pid) }
        }
        return found
    }

    /// A small file such as /proc/PID/stat, read whole.
    static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = read(fd, &buffer, buffer.count)
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
    }

    /// Sends `signal` to `pid`, and to its whole group when it leads one (a daemon's `setsid` makes it so).
    static func signalTree(_ pid: pid_t, _ signal: Int32) {
        if getpgid(pid) == pid { _ = killpg(pid, signal) }
        _ = Glibc.kill(pid, signal)
    }

    /// Reaps children that were re-parented to Sidestat (it is their subreaper), without waiting. Called only once
    /// every direct child has been waited for, so it cannot take another waiter's exit status.
    static func reapOrphans() {
        var status: Int32 = 0
        while waitpid(-1, &status, WNOHANG) > 0 {}
    }
}

/// A flag one thread sets and others read.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { self.value.load(ordering: .relaxed) }
    func set() { self.value.store(true, ordering: .relaxed) }
}
