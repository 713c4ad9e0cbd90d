//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// Process trees for the process-metrics benchmark and probe.
#if canImport(Glibc)
import Glibc
#endif

/// Starts `sh -c "sleep 120; true"` (a shell and its child, as a Procfile line runs) in a process group of its own,
/// its output to /dev/null, and returns its pid: `kill(-pid, SIGKILL)` then stops both, and no sleep is left holding
/// the benchmark's output pipe (which would keep `swift package benchmark` waiting).
public func spawnSleeper() -> pid_t {
    var pid: pid_t = 0
    let arguments = ["/bin/sh", "-c", "sleep 120; true"]
    var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
    posix_spawnattr_setpgroup(&attributes, 0)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for fd: Int32 in [0, 1, 2] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_RDWR, 0) }
    posix_spawn(&pid, "/bin/sh", &actions, &attributes, &argv, environ)
    return pid
}

/// Stops a sleeper's whole group and reaps the shell.
public func stopSleeper(_ pid: pid_t) {
    kill(-pid, SIGKILL)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
}
