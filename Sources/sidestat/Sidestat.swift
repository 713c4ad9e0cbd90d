//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import ArgumentParser
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
struct Sidestat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidestat",
        abstract: "A statsd-compatible metrics sidecar: Etsy statsd's protocol, config file and Graphite output.",
        discussion: """
            With no arguments Sidestat listens on UDP 127.0.0.1:8125 (management on 127.0.0.1:8126) and prints each \
            flush to the console every 10 s. `sidestat config.js` runs it like `node stats.js config.js`.
            """,
        subcommands: [Serve.self, CheckConfig.self],
        defaultSubcommand: Serve.self
    )
}

/// Where a command reads its configuration: `--config FILE` or a bare `FILE`, as `node stats.js FILE`.
struct ConfigurationOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "A statsd configuration file (config.js or JSON).")
    var config: String?

    @Argument(help: "The configuration file, given the way `node stats.js config.js` takes it.")
    var file: String?

    func validate() throws {
        if self.config != nil && self.file != nil {
            throw ValidationError("Give the configuration file once: either --config FILE or FILE.")
        }
    }

    var path: String? { self.config ?? self.file }

    /// Loads the configuration, or prints every problem and exits with code 2.
    func load() throws -> DaemonConfiguration {
        guard let path = self.path else { return .embeddedDefault }
        do {
            let (configuration, warnings) = try DaemonConfiguration.load(path: path, environment: processEnvironment())
            for warning in warnings { printError("sidestat: warning: \(path): \(warning)") }
            return configuration
        } catch let error as ConfigurationError {
            printError("sidestat: configuration error:\n" + error.description.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            throw ExitCode(2)
        }
    }
}

func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(2, buffer.baseAddress! + offset, buffer.count - offset)
            if written <= 0 { return }
            offset += written
        }
    }
}

extension Sidestat {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the statsd server (the default command).",
            discussion: "SIGTERM or SIGINT stops listening, flushes once more, waits for delivery and exits 0.")

        @OptionGroup var options: ConfigurationOptions

        func run() async throws {
            let configuration = try self.options.load()
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
                printError("sidestat: cannot start: \(error)")
                throw ExitCode(1)
            }
            try await daemon.run()
        }
    }

    struct CheckConfig: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-config",
            abstract: "Validate a configuration file and print the effective configuration.",
            discussion: "Exits 0 when the file is usable and 2 (naming each bad key) when it is not.")

        @Argument(help: "The configuration file (config.js or JSON).")
        var file: String

        func run() async throws {
            let configuration = try ConfigurationOptions(config: self.file, file: nil).load()
            print(configuration.effectiveDescription)
        }
    }
}

extension ConfigurationOptions {
    init(config: String?, file: String?) {
        self.init()
        self.config = config
        self.file = file
    }
}
