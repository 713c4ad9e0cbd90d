//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import ServiceLifecycle
import SidestatBackends
import SidestatConfiguration
import SidestatRunner
import SidestatServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `sidestat start`: honcho's `start` with the statsd server inside.
enum Start {
    static let spec = CommandSpec(
        name: "start",
        usage:
            "sidestat start [<process> ...] [-f <procfile>] [-e <env>[,...]] [-c <name=N>[,...]] [-p <port>] [--config <file>] [--no-statsd] [--no-prefix] [--no-color] [-t <seconds>]",
        abstract: "Run the processes of a Procfile, with the statsd server in the same process tree.",
        discussion: """
            Each process runs as `sh -c COMMAND` in its own process group, with PORT = base + 100 × its type's index + \
            its instance number, and STATSD_HOST, STATSD_PORT, DD_AGENT_HOST and DD_DOGSTATSD_PORT pointing at the \
            embedded statsd server. When any process exits, or on SIGTERM or SIGINT, the others get SIGTERM, then \
            SIGKILL after the grace period; the statsd server keeps receiving meanwhile, then flushes once more. The \
            exit code is that of the first process that exited.
            """,
        options: [
            .init(names: ["-f", "--procfile"], valueName: "procfile", help: "The Procfile (default: ./Procfile)."),
            .init(
                names: ["-e", "--env"], valueName: "env",
                help: "Environment files, comma-separated (default: ./.env when it exists)."),
            .init(names: ["-c", "--concurrency"], valueName: "name=N", help: "Instances per process type: web=2,worker=1."),
            .init(names: ["-p", "--port"], valueName: "port", help: "The base port (default: $PORT, else 5000)."),
            .init(names: ["--config"], valueName: "file", help: "The statsd configuration file (default: the embedded one)."),
            .init(names: ["--no-statsd"], valueName: nil, help: "Do not run the statsd server."),
            .init(names: ["--no-prefix"], valueName: nil, help: "Print output lines without the time and name."),
            .init(names: ["--no-color", "--no-colour"], valueName: nil, help: "Never colour the prefixes."),
            .init(
                names: ["-t", "--timeout"], valueName: "seconds",
                help: "Grace period between SIGTERM and SIGKILL (default: 10)."),
        ],
        arguments: [("<process>", "Process types to run (default: every type but release).")])

    static func run(_ parsed: ParsedCommand) async throws -> Int32 {
        let procfilePath = parsed.value("-f") ?? "Procfile"
        let procfile: Procfile
        do {
            procfile = try loadProcfile(procfilePath)
        } catch {
            writeStandardError("sidestat: \(error)")
            return 1
        }
        var types = procfile.runnable
        if !parsed.positional.isEmpty {
            types = []
            for name in parsed.positional {
                guard let type = procfile.processes.first(where: { $0.name == name }) else {
                    writeStandardError("sidestat: process type '\(name)' does not exist in \(procfilePath)")
                    return 1
                }
                types.append(type)
            }
        }
        guard !types.isEmpty else {
            writeStandardError("sidestat: \(procfilePath) defines no process to start")
            return 1
        }
        var environment = processEnvironment()
        do {
            for (key, value) in try loadEnvironmentFiles(parsed.value("-e")) { environment[key] = value }
        } catch {
            writeStandardError("sidestat: \(error)")
            return 1
        }
        let concurrency: [String: Int]
        let basePort: Int
        let grace: Int
        do {
            concurrency = try parseConcurrency(parsed.value("-c"))
            basePort = try integer(parsed.value("-p") ?? environment["PORT"] ?? "5000", "port", in: 1...65_535)
            grace = try integer(parsed.value("-t") ?? "10", "timeout", in: 0...3600)
        } catch {
            writeStandardError("sidestat: \(error)")
            return 1
        }
        let planned = planProcesses(types, concurrency: concurrency, basePort: basePort)
        let statsd = !parsed.has("--no-statsd")
        let printer = LinePrinter(
            names: planned.map(\.name) + ["system"] + (statsd ? ["statsd.1"] : []), prefix: !parsed.has("--no-prefix"),
            colour: !parsed.has("--no-color"))
        for warning in procfile.warnings { printer.write("warning: \(warning)", name: "system") }

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if statsd {
            guard let configuration = loadConfiguration(parsed.value("--config")) else { return 2 }
            let output = PrefixedOutput(printer: printer, name: "statsd.1", colourIndex: planned.count)
            let level: Logger.Level = configuration.debug ? .debug : .info
            LoggingSystem.bootstrap { _ in StatsdLogHandler(output: output, level: level, timestamps: false) }
            let daemon: Daemon
            do {
                daemon = try await Daemon.start(configuration: configuration, output: output, logger: Logger(label: "sidestat"))
            } catch {
                writeStandardError("sidestat: cannot start the statsd server: \(error)")
                return 1
            }
            advertise(daemon, in: &environment)
            daemon.logUp()
            services = daemon.services
        }
        let supervisor = Supervisor(
            specs: planned.map { process in
                var env = environment
                env["PORT"] = String(process.port)
                env["SIDESTAT_PROCESS_NAME"] = process.name
                env["HONCHO_PROCESS_NAME"] = process.name
                return Supervisor.Spec(name: process.name, arguments: ["/bin/sh", "-c", process.command], environment: env)
            }, printer: printer, grace: .seconds(grace))
        try await runSupervised(supervisor, after: services)
        return supervisor.exitCode
    }
}

/// Runs the embedded server's services and then `supervisor`, last: when it returns (every child has stopped) the
/// group shuts down in reverse order, listeners first, and the final flush runs.
func runSupervised(
    _ supervisor: Supervisor, after services: [ServiceGroupConfiguration.ServiceConfiguration]
) async throws {
    var configuration = ServiceGroupConfiguration(
        services: services + [
            .init(service: supervisor, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "processes")
        ],
        logger: Logger(label: "sidestat.lifecycle", factory: { _ in SwiftLogNoOpLogHandler() }))
    configuration.maximumGracefulShutdownDuration = .seconds(40)
    try await ServiceGroup(configuration: configuration).run()
}

/// `sidestat run [--config FILE] -- COMMAND [ARGS...]`.
enum RunCommand {
    static let spec = CommandSpec(
        name: "run", usage: "sidestat run [--config <file>] [-e <env>[,...]] -- <command> [<argument> ...]",
        abstract: "Run one command with the statsd server alongside; the exit code is the command's.",
        discussion: """
            The command gets STATSD_HOST, STATSD_PORT, DD_AGENT_HOST and DD_DOGSTATSD_PORT, and its output passes \
            through unchanged. SIGTERM and SIGINT go to the command; when it exits the server flushes once more.
            """,
        options: [
            configOption,
            .init(names: ["-e", "--env"], valueName: "env", help: "Environment files, comma-separated."),
        ],
        arguments: [("<command>", "The command and its arguments, after `--`.")])

    static func run(_ parsed: ParsedCommand) async throws -> Int32 {
        let command = parsed.sawSeparator ? parsed.rest : parsed.positional
        guard !command.isEmpty else { throw UsageError(description: "give the command to run after `--`") }
        var environment = processEnvironment()
        do {
            for (key, value) in try loadEnvironmentFiles(parsed.value("-e")) { environment[key] = value }
        } catch {
            writeStandardError("sidestat: \(error)")
            return 1
        }
        guard let configuration = loadConfiguration(parsed.value("--config")) else { return 2 }
        let level: Logger.Level = configuration.debug ? .debug : .info
        LoggingSystem.bootstrap { _ in StatsdLogHandler(output: StandardOutput.shared, level: level) }
        let daemon: Daemon
        do {
            daemon = try await Daemon.start(configuration: configuration, logger: Logger(label: "sidestat"))
        } catch {
            writeStandardError("sidestat: cannot start the statsd server: \(error)")
            return 1
        }
        advertise(daemon, in: &environment)
        daemon.logUp()
        let supervisor = Supervisor(
            specs: [Supervisor.Spec(name: command[0], arguments: command, environment: environment)], printer: nil,
            grace: .seconds(10))
        try await runSupervised(supervisor, after: daemon.services)
        return supervisor.exitCode
    }
}

/// `sidestat check [-f Procfile]`.
enum Check {
    static let spec = CommandSpec(
        name: "check", usage: "sidestat check [-f <procfile>]",
        abstract: "Validate a Procfile and list its process types.",
        options: [.init(names: ["-f", "--procfile"], valueName: "procfile", help: "The Procfile (default: ./Procfile).")])

    static func run(_ parsed: ParsedCommand) async throws -> Int32 {
        let path = parsed.value("-f") ?? "Procfile"
        do {
            let procfile = try loadProcfile(path)
            for warning in procfile.warnings { writeStandardError("sidestat: warning: \(warning)") }
            guard !procfile.processes.isEmpty else {
                writeStandardError("sidestat: \(path) defines no process")
                return 1
            }
            writeStandardOutput("Valid procfile detected (\(procfile.processes.map(\.name).joined(separator: ", ")))\n")
            return 0
        } catch {
            writeStandardError("sidestat: \(error)")
            return 1
        }
    }
}

struct RunnerError: Error, CustomStringConvertible {
    var description: String
}

/// Tells the children where the aggregator listens: statsd clients read `STATSD_HOST`/`STATSD_PORT`, DogStatsD
/// clients `DD_AGENT_HOST`/`DD_DOGSTATSD_PORT`.
func advertise(_ daemon: Daemon, in environment: inout [String: String]) {
    guard let udp = daemon.udpListeners.first else { return }
    let host = udp.localAddress.trimmingCharacters(in: "[]")
    environment["STATSD_HOST"] = host
    environment["STATSD_PORT"] = String(udp.port)
    environment["DD_AGENT_HOST"] = host
    environment["DD_DOGSTATSD_PORT"] = String(udp.port)
}

/// The file at `path`, or a `RunnerError` naming it.
func readRunnerFile(_ path: String) throws -> String {
    do {
        return try readTextFile(path)
    } catch {
        throw RunnerError(description: "cannot read \(path): \(error.reason)")
    }
}

func loadProcfile(_ path: String) throws -> Procfile {
    guard access(path, F_OK) == 0 else { throw RunnerError(description: "no Procfile at \(path)") }
    return try Procfile.parse(try readRunnerFile(path), path: path)
}

/// The named .env files in order (a missing one is an error), or ./.env when it exists.
func loadEnvironmentFiles(_ list: String?) throws -> [(String, String)] {
    let paths = list.map { $0.split(separator: ",").map(String.init) } ?? (access(".env", F_OK) == 0 ? [".env"] : [])
    var values: [(String, String)] = []
    for path in paths { values += DotEnv.parse(try readRunnerFile(path)) }
    return values
}

func parseConcurrency(_ text: String?) throws -> [String: Int] {
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

func integer(_ text: String, _ name: String, in range: ClosedRange<Int>) throws -> Int {
    guard let value = Int(text), range.contains(value) else {
        throw RunnerError(description: "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
    }
    return value
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
