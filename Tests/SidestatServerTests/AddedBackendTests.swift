//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import ServiceLifecycle
import SidestatAggregation
import SidestatBackends
import SidestatConfiguration
import SidestatServer
import Synchronization
import Testing

// docs/adding-a-backend.md, proved: a backend that exists only in this file (its settings, its backend) and joins
// through one line, the registry it is loaded with. Nothing else in Sources knows it.

/// The test backend's settings: `backends: ["echo"]`, `echo: { label: "..." }`.
struct EchoConfiguration: BackendSection, Hashable {
    var label = "echo"

    static let names = ["echo", "./backends/echo"]
    static let keys = ["echo"]

    init() {}

    init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        let echo = reader.section(object, "echo", example: "{label: \"x\"}")
        if let label = reader.string(echo["label"], key: "echo.label") {
            if label.isEmpty { reader.problem("echo.label", "must not be empty") } else { self.label = label }
        }
    }

    func describe(into description: inout ConfigurationDescription) {
        description.add("echo", "{ label: \(description.quote(self.label)) }")
    }

    func makeBackend(_ context: BackendContext) -> any MetricsBackend { EchoBackend(label: self.label) }
}

/// Keeps every flush's counters.
final class EchoBackend: MetricsBackend {
    let label: String
    let flushes = Mutex<[(isFinal: Bool, counters: [String: Double])]>([])
    /// Each flush as it arrives, for a test to await (rather than block a thread polling).
    let arrivals: AsyncStream<Void>
    private let arrived: AsyncStream<Void>.Continuation

    init(label: String) {
        self.label = label
        (self.arrivals, self.arrived) = AsyncStream.makeStream()
    }

    var name: String { "echo" }
    var destination: String { "memory (\(self.label))" }

    func flush(_ data: FlushData, deadline: ContinuousClock.Instant, logger: Logger) async {
        let counters = Dictionary(
            data.snapshot.counters.map { (data.snapshot.string($0.key), $0.value) }, uniquingKeysWith: { $1 })
        self.flushes.withLock { $0.append((data.isFinal, counters)) }
        self.arrived.yield()
    }

    func status() -> [(name: String, value: Double)] {
        [("flushes", Double(self.flushes.withLock { $0.count }))]
    }

    func total(_ key: String) -> Double { self.flushes.withLock { $0.reduce(0) { $0 + ($1.counters[key] ?? 0) } } }
}

struct AddedBackendTests {
    /// The one line that adds it.
    static let registry: [any UpstreamSection.Type] = BackendRegistry.sections + [EchoConfiguration.self]

    func configuration(_ source: String, registry: [any UpstreamSection.Type] = Self.registry) throws -> DaemonConfiguration {
        guard case .object(let object) = try ConfigScript.evaluate(source, environment: [:]) else {
            throw ConfigScriptError(line: 1, column: 1, message: "not an object")
        }
        return try DaemonConfiguration.from(object, upstreams: registry).configuration
    }

    @Test("a backend from its own file and the registry line: its keys are read, checked and described")
    func configurationSection() throws {
        let c = try self.configuration("{ backends: ['echo', 'graphite'], echo: { label: 'mine' } }")
        #expect(c.backends == ["echo", "graphite"])
        #expect(c.upstream(EchoConfiguration.self)?.label == "mine")
        #expect(c.effectiveDescription.contains("  echo: { label: \"mine\" },"))
        #expect(throws: ConfigurationError.self) { try self.configuration("{ backends: ['echo'], echo: { label: '' } }") }
        // Without the line, the name is refused and its keys are unknown.
        #expect(throws: ConfigurationError.self) {
            try self.configuration("{ backends: ['echo'] }", registry: BackendRegistry.sections.map { $0 })
        }
    }

    @Test("the daemon runs it: each flush reaches it, the final one on shutdown", .timeLimit(.minutes(1)))
    func daemonRunsIt() async throws {
        let c = try self.configuration("{ port: 0, mgmt_port: 0, flushInterval: 200, backends: ['echo'] }")
        let daemon = try await Daemon.start(
            configuration: c, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let echo = try #require(daemon.backends.first as? EchoBackend)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: daemon.services, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let port = daemon.udpListeners[0].port
            Send.udp(["echo.hits:2|c"], port: port)
            // Flushes come every 200 ms; the time limit ends the test should none ever carry the value.
            for await _ in echo.arrivals where echo.total("echo.hits") == 2 { break }
            #expect(echo.total("echo.hits") == 2)
            Send.udp(["echo.hits:3|c"], port: port)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(echo.total("echo.hits") == 5)
        #expect(echo.flushes.withLock { $0.last?.isFinal } == true)
    }
}
