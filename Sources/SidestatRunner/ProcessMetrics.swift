//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the runner reports about the dyno at each flush, read from /proc and the memory cgroup, as statsd lines:
/// - `processes.<name>.<n>.memory_rss_bytes` (gauge): the resident memory of the process and its descendants;
/// - `processes.<name>.<n>.cpu_seconds` (counter): the CPU time (user + system) the tree used since the last sample,
///   fractions kept, so that its rate per second is the cores it keeps busy;
/// - `dyno.memory_bytes` (gauge): the container's memory as the platform counts it (cgroup v2 `memory.current`, v1
///   `memory.usage_in_bytes`), or, without a memory cgroup, the processes' RSS and Sidestat's own;
/// - `dyno.memory_quota_bytes` (gauge): the cgroup's limit, or the configured quota;
/// - `dyno.load_avg_1m` (gauge).
///
/// A process's tree is found from `/proc/PID/task/TID/children`, so a sample reads only the trees' own entries (no
/// walk of every process on the machine). A daemon a child detaches (`setsid`) is reparented to Sidestat and is not
/// counted in anyone's tree.
///
/// When `dyno.memory_bytes` passes 90% of the quota, `warn` is called once per crossing (again only after it fell
/// below 85%), naming the process with the most memory: Heroku swaps past the quota (R14), then kills (R15).
public final class ProcessMetrics: Sendable {
    let proc: String
    let cgroupRoot: String
    let configuredQuota: Int?
    let warn: @Sendable (String) -> Void
    let pageSize: Int
    let ticksPerSecond: Double

    struct State {
        /// CPU ticks of each process tree at the last sample, by process name.
        var ticks: [String: Int] = [:]
        var aboveWarning = false
    }

    let state = Mutex(State())

    /// - Parameters:
    ///   - quotaBytes: the memory quota where the cgroup sets none (or to test the warning).
    ///   - proc, cgroupRoot: where /proc and the cgroup file systems are (tests give others).
    public init(
        quotaBytes: Int? = nil, proc: String = "/proc", cgroupRoot: String = "/sys/fs/cgroup",
        warn: @escaping @Sendable (String) -> Void
    ) {
        self.configuredQuota = quotaBytes
        self.proc = proc
        self.cgroupRoot = cgroupRoot
        self.warn = warn
        self.pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        self.ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// One sample of `processes` (name and pid of each supervised process), as statsd lines.
    public func sample(_ processes: [(name: String, pid: pid_t)]) -> String {
        var out = ""
        var total = 0
        var largest: (name: String, bytes: Int)? = nil
        var ticks: [String: Int] = [:]
        for process in processes {
            guard let tree = self.tree(process.pid) else { continue }
            total += tree.rss
            if tree.rss > largest?.bytes ?? -1 { largest = (process.name, tree.rss) }
            ticks[process.name] = tree.ticks
            out += "processes.\(process.name).memory_rss_bytes:\(tree.rss)|g\n"
        }
        let deltas = self.state.withLock { state -> [String: Int] in
            var deltas: [String: Int] = [:]
            for (name, now) in ticks {
                // The first sample of a process counts from 0: what it used before Sidestat looked is not this
                // interval's. A tree that lost members (a child reparented) can read lower: no negative time.
                deltas[name] = max(0, now - (state.ticks[name] ?? now))
            }
            state.ticks = ticks
            return deltas
        }
        for process in processes {
            guard let delta = deltas[process.name] else { continue }
            out += "processes.\(process.name).cpu_seconds:\(Self.seconds(delta, per: self.ticksPerSecond))|c\n"
        }
        let cgroup = self.cgroupMemory()
        let used = cgroup?.used ?? (total + (self.residentBytes(getpid()) ?? 0))
        out += "dyno.memory_bytes:\(used)|g\n"
        let quota = cgroup?.limit ?? self.configuredQuota
        if let quota, quota > 0 {
            out += "dyno.memory_quota_bytes:\(quota)|g\n"
            self.checkQuota(used: used, quota: quota, largest: largest)
        }
        if let load = Self.readFile(self.proc + "/loadavg")?.split(separator: " ").first.flatMap({ Double($0) }) {
            out += "dyno.load_avg_1m:\(load)|g\n"
        }
        return out
    }

    /// Warns once when memory passes 90% of the quota; again only after it fell below 85%.
    func checkQuota(used: Int, quota: Int, largest: (name: String, bytes: Int)?) {
        let percent = Double(used) / Double(quota) * 100
        let warn = self.state.withLock { state -> Bool in
            if percent >= 90, !state.aboveWarning {
                state.aboveWarning = true
                return true
            }
            if percent < 85 { state.aboveWarning = false }
            return false
        }
        guard warn else { return }
        var text = "dyno memory is at \(Int(percent.rounded()))% of its quota (\(Self.mebibytes(used)) of "
            + "\(Self.mebibytes(quota))): past it the platform swaps (Heroku R14), then stops the dyno (R15)"
        if let largest { text += "; \(largest.name) holds the most, \(Self.mebibytes(largest.bytes))" }
        self.warn(text)
    }

    static func mebibytes(_ bytes: Int) -> String {
        let value = Double(bytes) / 1_048_576
        return value >= 100 ? "\(Int(value.rounded())) MiB" : "\(Double(Int(value * 10)) / 10) MiB"
    }

    static func seconds(_ ticks: Int, per second: Double) -> String {
        let seconds = Double(ticks) / second
        return seconds == seconds.rounded() ? String(Int(seconds)) : "\(seconds)"
    }

    /// The resident bytes and CPU ticks (own and reaped children's) of a process and its descendants; nil when the
    /// process is gone. Each process costs two small reads: its `stat` and its main thread's `children` (every
    /// thread's only when it has more than one).
    public func tree(_ root: pid_t) -> (rss: Int, ticks: Int)? {
        withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 8) { buffer in
            guard let first = self.stat(root, buffer) else { return nil }
            var rss = first.rss
            var ticks = first.ticks
            var pending = self.children(root, threads: first.threads, buffer)
            var seen: Set<pid_t> = [root]
            while let pid = pending.popLast() {
                guard seen.insert(pid).inserted, let stat = self.stat(pid, buffer) else { continue }
                rss += stat.rss
                ticks += stat.ticks
                pending += self.children(pid, threads: stat.threads, buffer)
            }
            return (rss, ticks)
        }
    }

    /// From `stat`: RSS (field 24, pages), utime + stime + cutime + cstime (fields 14 to 17), and the thread count
    /// (field 20); read into `buffer`.
    func stat(_ pid: pid_t, _ buffer: UnsafeMutableRawBufferPointer) -> (rss: Int, ticks: Int, threads: Int)? {
        guard let count = Self.read("\(self.proc)/\(pid)/stat", into: buffer) else { return nil }
        let bytes = UnsafeRawBufferPointer(rebasing: buffer[..<count])
        // After the name (which may hold spaces and parentheses): " S ppid ...", fields counted from the state.
        guard var index = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        index += 2
        guard index < count, bytes[index] != UInt8(ascii: "Z") else { return nil }  // a zombie waits to be reaped
        var field = 0
        var ticks = 0
        var threads = 1
        var rss = 0
        while index < count, field <= 21 {
            var value = 0
            while index < count, bytes[index] != UInt8(ascii: " ") {
                let digit = Int(bytes[index]) &- 48
                if digit >= 0 && digit <= 9 { value = value &* 10 &+ digit }
                index += 1
            }
            switch field {
            case 11...14: ticks += value
            case 17: threads = max(1, value)
            case 21: rss = value
            default: break
            }
            field += 1
            index += 1
        }
        guard field == 22 else { return nil }
        return (rss * self.pageSize, ticks, threads)
    }

    func residentBytes(_ pid: pid_t) -> Int? {
        withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 8) { self.stat(pid, $0)?.rss }
    }

    /// The children of `pid`: those of its main thread, or of every thread when it has several.
    func children(_ pid: pid_t, threads: Int, _ buffer: UnsafeMutableRawBufferPointer) -> [pid_t] {
        func children(of tid: Int) -> [pid_t] {
            guard let count = Self.read("\(self.proc)/\(pid)/task/\(tid)/children", into: buffer) else { return [] }
            return Self.integers(UnsafeRawBufferPointer(rebasing: buffer[..<count]), limit: .max).map { pid_t($0) }
        }
        guard threads > 1 else { return children(of: Int(pid)) }
        var result: [pid_t] = []
        guard let tasks = opendir("\(self.proc)/\(pid)/task") else { return [] }
        defer { closedir(tasks) }
        while let entry = readdir(tasks) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) { name -> Int? in
                var value = 0
                var digits = 0
                for byte in name {
                    guard byte != 0 else { break }
                    guard byte >= 48 && byte <= 57 else { return nil }
                    value = value * 10 + Int(byte - 48)
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            if let tid { result += children(of: tid) }
        }
        return result
    }

    /// The unsigned integers in `bytes`, separated by anything else, at most `limit` of them.
    static func integers(_ bytes: UnsafeRawBufferPointer, limit: Int) -> [Int] {
        var result: [Int] = []
        var value = 0
        var inNumber = false
        for byte in bytes {
            if byte >= 48 && byte <= 57 {
                value = value &* 10 &+ Int(byte - 48)
                inNumber = true
            } else if inNumber {
                result.append(value)
                if result.count == limit { return result }
                value = 0
                inNumber = false
            }
        }
        if inNumber { result.append(value) }
        return result
    }

    /// A small file of /proc into `buffer` (what fits); its length, or nil when it cannot be read.
    static func read(_ path: String, into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var total = 0
        while total < buffer.count {
            let count = Glibc.read(fd, buffer.baseAddress! + total, buffer.count - total)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            total += count
            // A /proc file gives all it has in one read when it fits: no second read to see its end.
            if total < buffer.count { break }
        }
        return total
    }

    /// The memory cgroup's usage and limit (nil when there is none to read; limit nil when it is unlimited).
    func cgroupMemory() -> (used: Int, limit: Int?)? {
        guard let membership = Self.readFile(self.proc + "/self/cgroup") else { return nil }
        for line in membership.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(parts[2])
            if parts[0] == "0", parts[1].isEmpty {
                // cgroup v2: the unified hierarchy.
                for directory in [self.cgroupRoot + path, self.cgroupRoot] {
                    guard let current = Self.readInteger(directory + "/memory.current") else { continue }
                    let max = Self.readFile(directory + "/memory.max").flatMap { Int($0.trimmingCharacters(in: "\n")) }
                    return (current, max)
                }
            } else if parts[1].split(separator: ",").contains("memory") {
                // cgroup v1: the memory controller's hierarchy; a limit near 2^63 means none.
                for directory in [self.cgroupRoot + "/memory" + path, self.cgroupRoot + "/memory"] {
                    guard let usage = Self.readInteger(directory + "/memory.usage_in_bytes") else { continue }
                    let limit = Self.readInteger(directory + "/memory.limit_in_bytes").flatMap { $0 < 1 << 60 ? $0 : nil }
                    return (usage, limit)
                }
            }
        }
        return nil
    }

    static func readInteger(_ path: String) -> Int? {
        Self.readFile(path).flatMap { Int($0.trimmingCharacters(in: "\n")) }
    }

    /// A small file of /proc or /sys, whole; nil when it cannot be read.
    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = Glibc.read(fd, &buffer, buffer.count)
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
