//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

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

          See 'sidestat <subcommand> --help' for detailed help.

        """

    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let command: String
        if let first = arguments.first, Self.commands[first] != nil {
            command = first
            arguments.removeFirst()
        } else if arguments.first == "-h" || arguments.first == "--help" || arguments.first == "help" {
            writeStandardOutput(Self.overview)
            exit(0)
        } else {
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
            exit(64)
        } catch {
            writeStandardError("sidestat: \(error)")
            exit(1)
        }
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
    guard let path else { return .embeddedDefault(environment: processEnvironment()) }
    do {
        let (configuration, warnings) = try DaemonConfiguration.load(path: path, environment: processEnvironment())
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
        guard let configuration = loadConfiguration(parsed.value("--config") ?? parsed.positional.first) else { return 2 }
        let output: any TextOutput =
            configuration.logBackend == .syslog
            ? SyslogOutput(application: configuration.logApplication) : StandardOutput.shared
        let level: Logger.Level = configuration.debug ? .debug : .info
        LoggingSystem.bootstrap { _ in StatsdLogHandler(output: output, level: level) }
        let logger = Logger(label: "sidestat")
        let daemon: Daemon
        do {
            daemon = try await Daemon.start(configuration: configuration, output: StandardOutput.shared, logger: logger)
        } catch {
            writeStandardError("sidestat: cannot start: \(error)")
            return 1
        }
        try await daemon.run()
        return 0
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
        arguments: [("<file>", "The configuration file (config.js or JSON).")])

    static func run(_ parsed: ParsedCommand) async throws -> Int32 {
        guard parsed.positional.count <= 1 else { throw UsageError(description: "give one configuration file") }
        guard let configuration = loadConfiguration(parsed.positional.first) else { return 2 }
        writeStandardOutput(configuration.effectiveDescription + "\n")
        return 0
    }
}
