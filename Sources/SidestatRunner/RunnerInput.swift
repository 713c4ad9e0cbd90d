//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// What `sidestat start` and `run` read before they start anything: the Procfile, .env files, the concurrency
// option, and the variables that tell the children where statsd listens.

/// A line on standard error in honcho's log format: `2026-11-29 18:57:52 [1234] [INFO] message`.
public func honchoLog(_ level: String, _ message: String) {
    var now = time(nil)
    var parts = tm()
    localtime_r(&now, &parts)
    func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
    let date = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))"
    let clock = "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    writeStandardError("\(date) \(clock) [\(getpid())] [\(level)] \(message)")
}

public struct RunnerError: Error, CustomStringConvertible {
    public var description: String

    public init(description: String) { self.description = description }
}

/// The file at `path`, or a `RunnerError` naming it.
public func readRunnerFile(_ path: String) throws -> String {
    do {
        return try readTextFile(path)
    } catch {
        throw RunnerError(description: "cannot read \(path): \(error.reason)")
    }
}

public func loadProcfile(_ path: String) throws -> Procfile {
    guard access(path, F_OK) == 0 else {
        // Name the directory: "no Procfile at Procfile" alone does not say where Sidestat looked.
        var directory = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let place = path.hasPrefix("/") || getcwd(&directory, directory.count) == nil
            ? "" : " in \(String(decoding: directory.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))"
        throw RunnerError(
            description: "no Procfile at \(path)\(place); name the file with -f, as in \"sidestat start -f Procfile.dev\"")
    }
    return try Procfile.parse(try readRunnerFile(path), path: path)
}

/// The process's environment with the .env files' values over it, or nil after printing why a file cannot be read.
public func environmentWithFiles(_ list: String?) -> [String: String]? {
    var environment = processEnvironment()
    do {
        for (key, value) in try loadEnvironmentFiles(list) { environment[key] = value }
    } catch {
        writeStandardError("sidestat: \(error)")
        return nil
    }
    return environment
}

/// The named .env files in order (a missing one is an error), or ./.env when it exists.
public func loadEnvironmentFiles(_ list: String?) throws -> [(String, String)] {
    let paths = list.map { $0.split(separator: ",").map(String.init) } ?? (access(".env", F_OK) == 0 ? [".env"] : [])
    var values: [(String, String)] = []
    for path in paths { values += DotEnv.parse(try readRunnerFile(path)) }
    return values
}

public func parseConcurrency(_ text: String?) throws -> [String: Int] {
    var result: [String: Int] = [:]
    for item in (text ?? "").split(separator: ",") {
        let parts = item.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let count = Int(parts[1]), count >= 0 else {
            throw RunnerError(description: "concurrency must look like web=2,worker=1, got '\(item)'")
        }
        result[String(parts[0])] = count
    }
    return result
}

/// Where the aggregator listens, for the children: statsd clients read `STATSD_HOST`/`STATSD_PORT`, DogStatsD
/// clients `DD_AGENT_HOST`/`DD_DOGSTATSD_PORT`.
public func statsdEnvironment(host: String, port: Int) -> [String: String] {
    ["STATSD_HOST": host, "STATSD_PORT": String(port), "DD_AGENT_HOST": host, "DD_DOGSTATSD_PORT": String(port)]
}
