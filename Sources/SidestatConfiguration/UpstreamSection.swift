//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

/// One upstream's part of the configuration: its keys, defaults, validation and environment variables, and its
/// lines in `check-config`. Each backend's folder defines one; the loader is handed the list of them (the backends'
/// registry) and never names a backend.
public protocol UpstreamSection: Sendable {
    /// The names that select it in `backends`, its own name first (`graphite`, `./backends/graphite`, ...).
    static var names: [String] { get }

    /// The top-level keys it reads. Keys no section and not the core reads get an "unknown key" warning; keys of a
    /// section that `backends` does not list get an "ignored" warning.
    static var keys: [String] { get }

    /// Reads its keys from the file's object; problems and warnings go to `reader`. Called when `backends` lists it.
    init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext)

    /// Without a configuration file: the section the environment asks for (an API key's variable), or nil.
    init?(environment context: SectionContext, reader: inout ConfigurationReader)

    /// Its keys in the effective configuration.
    func describe(into description: inout ConfigurationDescription)
}

extension UpstreamSection {
    /// Its name in status output, logs and `check-config`.
    public static var name: String { Self.names[0] }

    public init?(environment context: SectionContext, reader: inout ConfigurationReader) { return nil }
}

/// What a section may read besides its own keys.
public struct SectionContext: Sendable {
    /// The environment (`process.env`).
    public var environment: [String: String]
    /// This daemon's name among several (`instance`).
    public var instance: String
    /// Whether the file set `instance` itself.
    public var instanceIsExplicit: Bool

    public init(environment: [String: String], instance: String, instanceIsExplicit: Bool) {
        self.environment = environment
        self.instance = instance
        self.instanceIsExplicit = instanceIsExplicit
    }
}

/// The effective configuration as the lines of a statsd config object; secret values print as `***` unless shown.
public struct ConfigurationDescription {
    public private(set) var lines: [String] = []
    public let showingSecrets: Bool

    init(showingSecrets: Bool) { self.showingSecrets = showingSecrets }

    private var keys: Set<String> = []

    /// Adds `key: value`, once (sections that share keys describe them once).
    public mutating func add(_ key: String, _ value: String) {
        if self.keys.insert(key).inserted { self.lines.append("  \(key): \(value),") }
    }

    /// A JavaScript string literal.
    public func quote(_ text: String) -> String { JSONText.quoted(text) }

    /// A secret's value: quoted when shown, else `"***"`.
    public func secret(_ text: String) -> String { self.showingSecrets ? self.quote(text) : "\"***\"" }

    /// `{ a: 1, b: "x" }`.
    public func object(_ parts: [String]) -> String { "{ " + parts.joined(separator: ", ") + " }" }
}
