//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestat
import SidestatBackends
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child started with posix_spawn in a process group of its own (its pid is the group's id), with every signal
/// back at its default (the parent ignores SIGTERM and SIGINT to handle them itself, and ignored signals would
/// otherwise be inherited), stdin from /dev/null, stdout and stderr either merged into one pipe or inherited, and no
/// other descriptor.
public final class ChildProcess: Sendable {
    public let name: String
    public let pid: pid_t
    /// The read end of the merged stdout/stderr pipe, or -1 when the output is inherited.
    public let outputFD: Int32

    public struct SpawnError: Error, CustomStringConvertible {
        public var description: String
    }

    /// - Parameters:
    ///   - arguments: the program and its arguments; the program is looked up in `PATH` when it has no `/`.
    public static func spawn(
        name: String, arguments: [String], environment: [String: String], captureOutput: Bool
    ) throws -> ChildProcess {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var fds: [Int32] = [-1, -1]
        if captureOutput {
            guard sidestat_pipe_cloexec(&fds) == 0 else {
                throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))")
            }
            posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
            posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        }
        // Nothing of Sidestat's beyond stdin, stdout and stderr: an orphan must never keep a statsd port open.
        guard sidestat_spawn_close_other_fds(&actions) == 0 else {
            if captureOutput {
                close(fds[0])
                close(fds[1])
            }
            throw SpawnError(description: "cannot prepare the child's descriptors: \(String(cString: strerror(errno)))")
        }

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, envp)
        if captureOutput { close(fds[1]) }
        guard result == 0 else {
            if captureOutput { close(fds[0]) }
            throw SpawnError(description: "cannot start \(arguments[0]): \(String(cString: strerror(result)))")
        }
        return ChildProcess(name: name, pid: pid, outputFD: captureOutput ? fds[0] : -1)
    }

    private init(name: String, pid: pid_t, outputFD: Int32) {
        self.name = name
        self.pid = pid
        self.outputFD = outputFD
    }

    /// Sends `signal` to the child's whole process group.
    public func signalGroup(_ signal: Int32) {
        _ = killpg(self.pid, signal)
    }

    /// Whether any process is still in the child's group. (A zombie counts until it is reaped: the supervisor is
    /// the subreaper of its children's orphans and reaps them.)
    public var groupAlive: Bool { killpg(self.pid, 0) == 0 }

    /// Blocks until the child exits; returns its exit code (128 + the signal when a signal ended it).
    public func waitForExit() -> Int32 {
        self.waitForExitStatus().code
    }

    /// Waits for the process; returns its exit code as a shell reports it (128 + N after signal N) and the signal
    /// that ended it, if one did.
    public func waitForExitStatus() -> (code: Int32, signal: Int32?) {
        var status: Int32 = 0
        while waitpid(self.pid, &status, 0) < 0 {
            if errno != EINTR { return (-1, nil) }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (the macros are not imported).
        let termination = status & 0x7F
        if termination == 0 { return ((status >> 8) & 0xFF, nil) }
        return (128 + termination, termination)
    }

    /// Reads the merged output until end of file, calling `line` with each complete line (and a last unterminated
    /// one). Blocks: run it on a thread of its own.
    public func readLines(stopWhen stop: () -> Bool = { false }, _ line: (String) -> Void) {
        guard self.outputFD >= 0 else { return }
        defer { close(self.outputFD) }
        var framer = LineFramer(maximumLineBytes: Self.maximumLineBytes)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            // Wake up now and then to see whether the supervisor has stopped waiting (a descendant that escaped
            // could hold the pipe open for ever).
            var entry = pollfd(fd: self.outputFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, 100)
            if ready == 0 {
                if stop() { break }
                continue
            }
            let count = read(self.outputFD, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            buffer.withUnsafeBufferPointer { framer.append(UnsafeBufferPointer(rebasing: $0[0..<count]), line) }
        }
        framer.finish(line)
    }

    /// A longer output line is cut there (the rest of it is dropped, and the cut is marked).
    public static let maximumLineBytes = 64 * 1024
}
