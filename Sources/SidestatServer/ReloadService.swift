//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import ServiceLifecycle
import SidestatAggregation
import SidestatConfiguration
import Synchronization
import UnixSignals

/// The settings a running daemon takes from a reloaded file: statsd's own reload applies the same ones (the
/// delete* options, `gaugesMaxTTL`, `keyNameSanitize`); everything else needs a restart.
public final class ReloadableSettings: Sendable {
    private let policy: Mutex<RetentionPolicy>

    init(_ configuration: DaemonConfiguration) {
        self.policy = Mutex(Self.policy(configuration))
    }

    /// What the next flush keeps and deletes.
    var retention: RetentionPolicy { self.policy.withLock { $0 } }

    func apply(_ configuration: DaemonConfiguration) {
        self.policy.withLock { $0 = Self.policy(configuration) }
    }

    static func policy(_ c: DaemonConfiguration) -> RetentionPolicy {
        var policy = RetentionPolicy()
        policy.deleteCounters = c.deleteCounters
        policy.deleteTimers = c.deleteTimers
        policy.deleteSets = c.deleteSets
        policy.deleteGauges = c.deleteGauges
        policy.gaugesMaxTTL = c.gaugesMaxTTL
        return policy
    }
}

/// SIGHUP reloads the configuration file: it is read and validated first (an invalid file keeps the running
/// configuration, and the log says why); then what can change while running is applied, and what cannot is named.
struct ReloadService: Service {
    let path: String
    let environment: [String: String]
    let running: DaemonConfiguration
    let settings: ReloadableSettings
    let aggregator: Aggregator
    let logger: Logger

    /// The keys a reload applies.
    static let liveKeys: Set<String> = [
        "deleteIdleStats", "deleteCounters", "deleteTimers", "deleteSets", "deleteGauges", "gaugesMaxTTL",
        "keyNameSanitize",
    ]

    func run() async {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            self.reload()
        }
    }

    func reload() {
        let loaded: DaemonConfiguration
        do {
            let (configuration, warnings) = try DaemonConfiguration.load(
                path: self.path, environment: self.environment, upstreams: self.running.registeredUpstreams)
            for warning in warnings { self.logger.warning("\(self.path): \(warning)") }
            loaded = configuration
        } catch {
            self.logger.error(
                "Configuration not reloaded; the running one is kept",
                metadata: ["config.path": "\(self.path)", "error": "\(error)"])
            return
        }
        self.settings.apply(loaded)
        self.aggregator.reconfigure(
            sanitizeKeys: loaded.keyNameSanitize, deleteGauges: loaded.deleteGauges, gaugesMaxTTL: loaded.gaugesMaxTTL)
        let old = self.running.source
        let new = loaded.source
        let changed = Set(old.keys + new.keys).filter { old[$0] != new[$0] }.sorted()
        let applied = changed.filter(Self.liveKeys.contains)
        let restart = changed.filter { !Self.liveKeys.contains($0) }
        self.logger.info(
            "Configuration reloaded",
            metadata: [
                "config.path": "\(self.path)",
                "config.applied": "\(applied.isEmpty ? "-" : applied.joined(separator: ","))",
                "config.needs_restart": "\(restart.isEmpty ? "-" : restart.joined(separator: ","))",
            ])
    }
}
