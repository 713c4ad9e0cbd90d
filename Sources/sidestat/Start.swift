//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
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
            "sidestat start [<process> ...] [-f <procfile>] [-e <env>[,...]] [-c <name=N>[,...]] [-q <name>[,...]] [-p <port>] [--config <file>] [--no-statsd] [--no-dashboard] [--no-process-metrics] [--no-log-metrics] [--memory-quota <size>] [--no-prefix] [--no-color] [-t <seconds>]",
        abstract: "Run the processes of a Procfile, with the statsd server in the same process tree.",
        discussion: """
            Each process runs as `sh -c COMMAND` in its own process group, with PORT = base + 100 × its type's index + \
            its instance number, and STATSD_HOST, STATSD_PORT, DD_AGENT_HOST and DD_DOGSTATSD_PORT pointing at the \
            embedded statsd server. When any process exits, or on SIGTERM or SIGINT, the others get SIGTERM, then \
            SIGKILL after the grace period; the statsd server keeps receiving meanwhile, then flushes once more. The \
            exit code is that of the first process that exited.
            """,
        options: procfileOptions + [
            .init(names: ["-c", "--concurrency"], valueName: "name=N", help: "Instances per process type: web=2,worker=1."),
            .init(names: ["-p", "--port"], valueName: "port", help: "The base port (default: $PORT, else 5000)."),
            .init(
                names: ["-q", "--quiet"], valueName: "process1,process2",
                help: "Process types whose output is hidden (their started and stopped lines still show)."),
            .init(names: ["--config"], valueName: "file", help: "The statsd configuration file (default: the embedded one)."),
            .init(names: ["--no-statsd"], valueName: nil, help: "Do not run the statsd server."),
            .init(
                names: ["--no-dashboard"], valueName: nil,
                help: "Do not serve the live dashboard (on by default outside a dyno: http://127.0.0.1:8127/)."),
            .init(
                names: ["--no-process-metrics"], valueName: nil,
                help: "Do not report the processes' memory and CPU and the dyno's memory (processes.*, dyno.*)."),
            .init(
                names: ["--no-log-metrics"], valueName: nil,
                help: "Do not read l2met metrics (count#, measure#, sample#, unique#) in the processes' output."),
            .init(
                names: ["--memory-quota"], valueName: "size",
                help: "The dyno's memory quota where its cgroup sets none (512MB, 1GB): a warning past 90% of it."),
            .init(names: ["--no-prefix"], valueName: nil, help: "Print output lines without the time and name."),
            .init(names: ["--no-color", "--no-colour"], valueName: nil, help: "Never colour the prefixes."),
            .init(
                names: ["-t", "--timeout"], valueName: "seconds",
                help: "Grace period between SIGTERM and SIGKILL (default: 10)."),
        ],
        arguments: [("<process>", "Process types to run (default: every type but release).")])

    static func run(_ parsed: ParsedCommand) async throws -> Int32 {
        // As honcho: the .env files first, since they may name the Procfile (PROCFILE) and the base port (PORT).
        guard var environment = environmentWithFiles(parsed.value("-e")) else { return 1 }
        let procfilePath = parsed.value("-f") ?? environment["PROCFILE"] ?? "Procfile"
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
        let quiet = Set((parsed.value("-q") ?? "").split(separator: ",").map(String.init))
        let statsd = !parsed.has("--no-statsd")
        let printer = LinePrinter(
            names: planned.map(\.name) + ["system"] + (statsd ? ["statsd.1"] : []), prefix: !parsed.has("--no-prefix"),
            colour: !parsed.has("--no-color"))
        for warning in procfile.warnings { printer.write("warning: \(warning)", name: "system") }

        var memoryQuota: Int? = nil
        if let text = parsed.value("--memory-quota") {
            guard let bytes = ConfigurationReader.parseSize(text) else {
                writeStandardError("sidestat: --memory-quota must be a size such as 512MB or 2GB, got '\(text)'")
                return 1
            }
            memoryQuota = bytes
        }
        var daemon: Daemon? = nil
        if statsd {
            let output = PrefixedOutput(printer: printer, name: "statsd.1", colourIndex: planned.count)
            // A developer's machine (no $DYNO) gets the dashboard, unless told otherwise.
            let dashboard = environment["DYNO"] == nil && !parsed.has("--no-dashboard")
            switch await startEmbeddedDaemon(
                configPath: parsed.value("--config"), output: output, timestamps: false, implicitDashboard: dashboard,
                environment: &environment)
            {
            case .success(let started): daemon = started
            case .failure(let exit): return exit.code
            }
        }
        let logMetrics = !parsed.has("--no-log-metrics") && daemon?.configuration.logMetrics == true
        let supervisor = await Supervisor(
            specs: planned.map { process in
                var env = environment
                env["PORT"] = String(process.port)
                env["SIDESTAT_PROCESS_NAME"] = process.name
                env["HONCHO_PROCESS_NAME"] = process.name
                return Supervisor.Spec(
                    name: process.name, arguments: ["/bin/sh", "-c", process.command], environment: env,
                    quiet: quiet.contains(process.name.split(separator: ".").dropLast().joined(separator: ".")))
            }, printer: printer, grace: .seconds(grace),
            lineObserver: logMetrics ? daemon.map { LogLineMetrics(daemon: $0, printer: printer).observe } : nil)
        if let daemon, !parsed.has("--no-process-metrics"), daemon.configuration.processMetrics {
            let metrics = ProcessMetrics(quotaBytes: memoryQuota ?? daemon.configuration.memoryQuotaBytes) { warning in
                printer.write("warning: \(warning)", name: "system")
            }
            daemon.beforeEachFlush { [supervisor] in daemon.ingestLocal(metrics.sample(supervisor.running)) }
        }
        try await runSupervised(supervisor, with: daemon)
        return supervisor.exitCode
    }
}

/// The l2met metrics in the processes' output, aggregated by the embedded server; a malformed token is a bad line,
/// and said at most once a minute.
final class LogLineMetrics: Sendable {
    let daemon: Daemon
    let printer: LinePrinter
    let reports = ReportThrottle<Bool>()

    init(daemon: Daemon, printer: LinePrinter) {
        self.daemon = daemon
        self.printer = printer
    }

    func observe(process: String, line: String) {
        let scan = L2met.scan(line)
        if !scan.statsd.isEmpty { self.daemon.ingestLocal(scan.statsd) }
        guard scan.malformed > 0 else { return }
        self.daemon.countBadLines(scan.malformed)
        if self.reports.shouldReport() {
            self.printer.write(
                "warning: a metric token in \(process)'s output could not be read (l2met: count#name=1, measure#name=12ms, "
                    + "sample#name=4, unique#name=x); it is counted in bad_lines_seen: \(line.prefix(200))",
                name: "system")
        }
    }
}

/// Starts the embedded server of `start` and `run`, and tells the children where it listens (`environment`).
func startEmbeddedDaemon(
    configPath: String?, output: any TextOutput = StandardOutput.shared, timestamps: Bool = true,
    implicitDashboard: Bool = false, environment: inout [String: String]
) async -> Result<Daemon, StartFailure> {
    let result = await startDaemon(
        configPath: configPath, output: output, timestamps: timestamps, implicitDashboard: implicitDashboard)
    if case .success(let daemon) = result { advertise(daemon, in: &environment) }
    return result
}

/// Runs the embedded server's services (when there is one) and then `supervisor`, last: when it returns (every child
/// has stopped) the group shuts down in reverse order, listeners first, and the final flush runs. "server is up" is
/// logged here, after the supervisor trapped the signals, so a SIGTERM that follows it is always handled.
func runSupervised(_ supervisor: Supervisor, with daemon: Daemon?) async throws {
    daemon?.logUp()
    let services = daemon?.services ?? []
    // The processes' grace period, then the server's final flush (its own shutdownTimeout bounds it) with room to spare.
    var configuration = ServiceGroupConfiguration(
        services: services + [
            .init(service: supervisor, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "processes")
        ],
        logger: Logger(label: "sidestat.lifecycle", factory: { _ in SwiftLogNoOpLogHandler() }))
    configuration.maximumGracefulShutdownDuration = supervisor.grace + .seconds(30)
    try await ServiceGroup(configuration: configuration).run()
}

/// `sidestat run [--config FILE] -- COMMAND [ARGS...]`.
enum RunCommand {
    static let spec = CommandSpec(
        name: "run", usage: "sidestat run [--config <file>] [-e <env>[,...]] [--no-statsd] -- <command> [<argument> ...]",
        abstract: "Run one command with the statsd server alongside; the exit code is the command's.",
        discussion: """
            The command gets STATSD_HOST, STATSD_PORT, DD_AGENT_HOST and DD_DOGSTATSD_PORT, and its output passes \
            through unchanged. SIGTERM and SIGINT go to the command; when it exits the server flushes once more.
            """,
        options: [
            configOption,
            .init(names: ["-e", "--env"], valueName: "env", help: "Environment files, comma-separated."),
            .init(names: ["--no-statsd"], valueName: nil, help: "Do not run the statsd server."),
        ],
        arguments: [("<command>", "The command and its arguments, after `--`.")])

    static func run(_ parsed: ParsedCommand) async throws -> Int32 {
        let command = parsed.sawSeparator ? parsed.rest : parsed.positional
        guard !command.isEmpty else { throw UsageError(description: "give the command to run after `--`") }
        guard var environment = environmentWithFiles(parsed.value("-e")) else { return 1 }
        var daemon: Daemon? = nil
        if !parsed.has("--no-statsd") {
            switch await startEmbeddedDaemon(configPath: parsed.value("--config"), environment: &environment) {
            case .success(let started): daemon = started
            case .failure(let exit): return exit.code
            }
        }
        let supervisor = await Supervisor(
            specs: [Supervisor.Spec(name: command[0], arguments: command, environment: environment)], printer: nil,
            grace: .seconds(10))
        try await runSupervised(supervisor, with: daemon)
        return supervisor.exitCode
    }
}

/// The options `start` and `check` share with honcho: the Procfile and the .env files.
let procfileOptions: [CommandSpec.Option] = [
    .init(names: ["-f", "--procfile"], valueName: "procfile", help: "The Procfile (default: $PROCFILE, else ./Procfile)."),
    .init(
        names: ["-e", "--env"], valueName: "env", help: "Environment files, comma-separated (default: ./.env when it exists)."),
]

/// `sidestat check [-f Procfile]`.
enum Check {
    static let spec = CommandSpec(
        name: "check", usage: "sidestat check [-f <procfile>] [-e <env>[,...]]",
        abstract: "Validate a Procfile and list its process types (on standard error, as honcho logs it).",
        options: procfileOptions)

    static func run(_ parsed: ParsedCommand) async throws -> Int32 {
        guard let environment = environmentWithFiles(parsed.value("-e")) else { return 1 }
        do {
            let path = parsed.value("-f") ?? environment["PROCFILE"] ?? "Procfile"
            let procfile = try loadProcfile(path)
            for warning in procfile.warnings { writeStandardError("sidestat: warning: \(warning)") }
            guard !procfile.processes.isEmpty else {
                writeStandardError("sidestat: \(path) defines no process")
                return 1
            }
            honchoLog("INFO", "Valid procfile detected (\(procfile.processes.map(\.name).joined(separator: ", ")))")
            return 0
        } catch {
            writeStandardError("sidestat: \(error)")
            return 1
        }
    }
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

/// Tells the children where the aggregator listens (`STATSD_HOST`, `DD_AGENT_HOST`, ...).
func advertise(_ daemon: Daemon, in environment: inout [String: String]) {
    guard let udp = daemon.udpListeners.first else { return }
    let host = udp.localAddress.trimmingCharacters(in: "[]")
    environment.merge(statsdEnvironment(host: host, port: udp.port)) { _, new in new }
}
