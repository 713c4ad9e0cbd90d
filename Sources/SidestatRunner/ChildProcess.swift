//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CSidestat
import Dispatch
import SidestatSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A child started as a supervisor starts one (`sidestat_spawn`): in a process group of its own (its pid is the
/// group's id), with every signal back at its default (the parent ignores SIGTERM and SIGINT to handle them itself,
/// and ignored signals would otherwise be inherited), stdin from /dev/null, stdout and stderr either merged into one
/// pipe or inherited, no other descriptor, and SIGTERM as its parent-death signal: if Sidestat is killed outright
/// (SIGKILL, a crash), each child it started is told to stop.
public final class ChildProcess: Sendable {
    public let name: String
    public let pid: pid_t
    /// The read end of the merged stdout/stderr pipe, or -1 when the output is inherited.
    public let outputFD: Int32

    public struct SpawnError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Call it from a thread that lives as long as the child: the parent-death signal is sent when the thread that
    /// created the child ends (`Supervisor` keeps one such thread).
    /// - Parameters:
    ///   - arguments: the program and its arguments; the program is looked up in `PATH` (the child's environment's,
    ///     as execvpe does) when it has no `/`.
    public static func spawn(
        name: String, arguments: [String], environment: [String: String], captureOutput: Bool
    ) throws -> ChildProcess {
        guard let program = arguments.first, let path = Self.executablePath(program, environment: environment) else {
            throw SpawnError(description: "cannot start \(arguments.first ?? ""): \(String(cString: strerror(ENOENT)))")
        }
        var fds: [Int32] = [-1, -1]
        if captureOutput {
            guard sidestat_pipe_cloexec(&fds) == 0 else {
                throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))")
            }
        }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = sidestat_spawn(path, argv, envp, fds[1], SIGTERM, &pid)
        if captureOutput { close(fds[1]) }
        guard result == 0 else {
            if captureOutput { close(fds[0]) }
            throw SpawnError(description: "cannot start \(program): \(String(cString: strerror(result)))")
        }
        return ChildProcess(name: name, pid: pid, outputFD: captureOutput ? fds[0] : -1)
    }

    /// `program` itself when it has a `/`, else the first executable file of that name in `PATH`.
    static func executablePath(_ program: String, environment: [String: String]) -> String? {
        if program.contains("/") { return program }
        let searchPath = environment["PATH"] ?? getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in searchPath.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + program
            var info = stat()
            if stat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
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

/// The thread that creates the children and then waits, alive, until `release()`: Linux sends a child its
/// parent-death signal when the thread that created it ends, so the children cannot be created on a pool thread
/// (which may end whenever it is idle).
final class ParentThread: Sendable {
    private let released = DispatchSemaphore(value: 0)

    /// Runs `body` on the thread and returns its result; the thread then stays until `release()`.
    func run<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
        await withCheckedContinuation { continuation in
            ReaderThread(name: "sidestat-parent") { [released] in
                continuation.resume(returning: body())
                released.wait()
            }.start()
        }
    }

    func release() {
        self.released.signal()
    }
}
