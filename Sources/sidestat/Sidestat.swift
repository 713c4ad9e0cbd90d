//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Logging
import SidestatBackends
import SidestatConfiguration
import SidestatServer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct Sidestat {
    static let overview = """
        OVERVIEW: A statsd-compatible metrics sidecar: Etsy statsd's protocol, config file and Graphite output.

        With no arguments Sidestat listens on UDP 127.0.0.1:8125 (management on 127.0.0.1:8126) and prints each
        flush to the console every 10 s. `sidestat config.js` runs it like `node stats.js config.js`.

        USAGE: sidestat [serve] [--config <file>] [<file>]
               sidestat <subcommand>

        SUBCOMMANDS:
          serve (default)         Run the statsd server.
          check-config            Validate a configuration file and print the effective configuration.
          start                   Run a Procfile's processes with the statsd server inside (honcho's start).
          run                     Run one command with the statsd server alongside.
          check                   Validate a Procfile and list its process types.
          version                 Print the version (also --version).

          See 'sidestat help <subcommand>' (or 'sidestat <subcommand> --help') for detailed help.

        EXIT CODES:
          0                       Stopped by SIGTERM or SIGINT after the final flush (serve); success.
          1                       A Procfile, .env or runner option error (start, run, check); an unexpected failure.
          2                       A usage error (an unknown command or option), a configuration error, or a
                                  listener that cannot be opened.
          N                       start and run: the exit code of the first process that exited.
          128+N                   start and run stopped by signal N: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP).

        """

    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let command: String
        if let first = arguments.first, Self.commands[first] != nil {
            command = first
            arguments.removeFirst()
        } else if arguments.first == "-h" || arguments.first == "--help" {
            writeStandardOutput(Self.overview)
            exit(0)
        } else if arguments.first == "help" {
            // `sidestat help start` is `sidestat start --help`.
            guard arguments.count > 1, !["help", "version", "--help", "-h"].contains(arguments[1]) else {
                writeStandardOutput(Self.overview)
                exit(0)
            }
            guard let (spec, _) = Self.commands[arguments[1]] else { Self.unknownCommand(arguments[1]) }
            writeStandardOutput(spec.helpText)
            exit(0)
        } else if arguments.first == "--version" || arguments.first == "version" {
            writeStandardOutput("sidestat \(sidestatVersion)\n")
            exit(0)
        } else {
            // `sidestat config.js` runs the server, as `node stats.js config.js`; `sidestat strat` is a typo.
            if let first = arguments.first, !first.hasPrefix("-"), access(first, F_OK) != 0,
                Self.nearestCommand(to: first) != nil
            {
                Self.unknownCommand(first)
            }
            command = "serve"
        }
        let (spec, body) = Self.commands[command]!
        do {
            guard let parsed = try parse(arguments, spec) else {
                writeStandardOutput(spec.helpText)
                exit(0)
            }
            exit(try await body(parsed))
        } catch let error as UsageError {
            writeStandardError("Error: \(error.description)\nUsage: \(spec.usage)\n  See 'sidestat \(spec.name) --help' for more information.")
            exit(2)
        } catch {
            writeStandardError("sidestat: \(error)")
            exit(1)
        }
    }

    /// The command a mistyped one most likely meant (`strat` → `start`).
    static func nearestCommand(to name: String) -> String? {
        DaemonConfiguration.nearestKey(to: name, in: Set(Self.commands.keys).union(["help", "version"]))
    }

    /// An unknown command (not a file either): the nearest one, and exit code 2.
    static func unknownCommand(_ name: String) -> Never {
        let hint = Self.nearestCommand(to: name).map { "; did you mean \"\($0)\"?" } ?? ""
        writeStandardError(
            "sidestat: \"\(name)\" is not a command (nor a configuration file here)\(hint)\n"
                + "  See 'sidestat --help' for the commands.")
        exit(2)
    }

    static let commands: [String: (CommandSpec, @Sendable (ParsedCommand) async throws -> Int32)] = [
        "serve": (Serve.spec, Serve.run),
        "check-config": (CheckConfig.spec, CheckConfig.run),
        "start": (Start.spec, Start.run),
        "run": (RunCommand.spec, RunCommand.run),
        "check": (Check.spec, Check.run),
    ]
}

/// Loads the configuration named by `--config FILE` or a bare `FILE`, or prints every problem (exit code 2).
func loadConfiguration(_ path: String?) -> DaemonConfiguration? {
    guard let path else {
        let environment = processEnvironment()
        let (configuration, warnings) = BackendRegistry.embeddedDefault(environment: environment)
        for warning in warnings { writeStandardError("sidestat: warning: \(warning)") }
        return configuration
    }
    do {
        let (configuration, warnings) = try BackendRegistry.load(path: path, environment: processEnvironment())
        for warning in warnings { writeStandardError("sidestat: warning: \(path): \(warning)") }
        return configuration
    } catch let error as ConfigurationError {
        writeStandardError(
            "sidestat: configuration error:\n"
                + error.description.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        return nil
    } catch {
        writeStandardError("sidestat: configuration error: \(error)")
        return nil
    }
}

let configOption = CommandSpec.Option(
    names: ["--config", "-c"], valueName: "file", help: "A statsd configuration file (config.js or JSON).")

/// `sidestat serve`: the statsd daemon.
enum Serve {
    static let spec = CommandSpec(
        name: "serve", usage: "sidestat serve [--config <file>] [<file>]",
        abstract: "Run the statsd server (the default command).",
        discussion: "SIGTERM or SIGINT stops listening, flushes once more, waits for delivery and exits 0.",
        options: [configOption],
        arguments: [("<file>", "The configuration file, given the way `node stats.js config.js` takes it.")])

    static func run(_ parsed: ParsedCommand) async throws -> Int32 {
        guard parsed.positional.count <= 1 else { throw UsageError(description: "unexpected argument '\(parsed.positional[1])'") }
        if parsed.value("--config") != nil && !parsed.positional.isEmpty {
            throw UsageError(description: "give the configuration file once: either --config FILE or FILE")
        }
        let daemon: Daemon
        switch await startDaemon(configPath: parsed.value("--config") ?? parsed.positional.first) {
        case .success(let started): daemon = started
        case .failure(let exit): return exit.code
        }
        try await daemon.run(environment: processEnvironment())
        return 0
    }
}

/// Why the daemon did not start, as the exit code (the message is already printed).
struct StartFailure: Error {
    var code: Int32
}

/// The start-up shared by `serve`, `start` and `run`: loads the configuration (every problem printed, exit code 2),
/// sets up statsd's log lines on `output`, says which file was read, and binds every listener (one line naming the
/// listener that failed, exit code 2).
/// - Parameter timestamps: false when something else (the Procfile runner) prefixes each line with the time.
func startDaemon(
    configPath: String?, output: any TextOutput = StandardOutput.shared, timestamps: Bool = true,
    implicitDashboard: Bool = false
) async -> Result<Daemon, StartFailure> {
    guard var configuration = loadConfiguration(configPath) else { return .failure(StartFailure(code: 2)) }
    // `sidestat start` on a developer's machine: the dashboard, unless the file says otherwise.
    if implicitDashboard, configuration.dashboard == nil, !configuration.dashboardDeclined {
        configuration.dashboard = DashboardConfiguration(isImplicit: true)
    }
    let logOutput: any TextOutput =
        configuration.logBackend == .syslog ? SyslogOutput(application: configuration.logApplication) : output
    let level: Logger.Level = configuration.debug ? .debug : .info
    LoggingSystem.bootstrap { _ in StatsdLogHandler(output: logOutput, level: level, timestamps: timestamps) }
    let logger = Logger(label: "sidestat")
    // statsd's first line, word for word (node's util.log with the process id).
    let source = configPath ?? "none given, using the embedded default (UDP 127.0.0.1:8125, console backend)"
    logger.info("[\(getpid())] reading config file: \(source)", metadata: ["statsd.type": ""])
    do {
        return .success(try await Daemon.start(configuration: configuration, output: output, logger: logger))
    } catch let error as ListenError {
        writeStandardError("sidestat: \(error)")
        return .failure(StartFailure(code: 2))
    } catch {
        writeStandardError("sidestat: cannot start: \(error)")
        return .failure(StartFailure(code: 1))
    }
}

/// `sidestat check-config FILE`.
enum CheckConfig {
    static let spec = CommandSpec(
        name: "check-config", usage: "sidestat check-config [<file>]",
        abstract: "Validate a configuration file and print the effective configuration.",
        discussion: """
            Exits 0 when the file is usable and 2 (naming each bad key) when it is not. Without a file it prints the \
            embedded default as the environment shapes it (HOSTEDGRAPHITE_APIKEY, LIBRATO_USER, DYNO...).
            """,
        options: [
            .init(
                names: ["--show-secrets"], valueName: nil,
                help: "Print API keys, tokens and passwords (shown as *** otherwise).")
        ],
        arguments: [("<file>", "The configuration file (config.js or JSON).")])

    static func run(_ parsed: ParsedCommand) async throws -> Int32 {
        guard parsed.positional.count <= 1 else { throw UsageError(description: "give one configuration file") }
        guard let configuration = loadConfiguration(parsed.positional.first) else { return 2 }
        writeStandardOutput(configuration.effectiveDescription(showingSecrets: parsed.has("--show-secrets")) + "\n")
        return 0
    }
}
