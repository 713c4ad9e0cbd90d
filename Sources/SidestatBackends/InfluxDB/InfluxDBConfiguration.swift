//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration

/// InfluxDB's line protocol over HTTP: `/write` (1.x) or `/api/v2/write` (2.x, when `token` or `org` is set).
public struct InfluxDBConfiguration: BackendSection, Hashable {
    public var url = "http://127.0.0.1:8086"
    public var database = "statsd"
    public var username: String? = nil
    public var password: String? = nil
    public var token: String? = nil
    public var org: String? = nil
    public var bucket: String? = nil
    public var isVersion2: Bool { self.token != nil || self.org != nil }

    public init() {}

    public static let names = ["influxdb", "statsd-influxdb-backend", "./backends/influxdb"]
    public static let keys = ["influxdb"]

    public init(reading object: JSObject, reader: inout ConfigurationReader, context: SectionContext) {
        let influx = reader.section(object, "influxdb", example: "{url: \"http://127.0.0.1:8086\", database: \"statsd\"}")
        if let url = reader.string(influx["url"], key: "influxdb.url") {
            self.url = url
        } else if let host = reader.string(influx["host"], key: "influxdb.host") {
            let port = reader.integer(influx["port"], key: "influxdb.port", in: 1...65_535) ?? 8086
            self.url = "http://\(host):\(port)"
        }
        while self.url.hasSuffix("/") { self.url.removeLast() }
        if let database = reader.string(influx["database"], key: "influxdb.database") { self.database = database }
        self.username = reader.string(influx["username"], key: "influxdb.username")
        self.password = reader.string(influx["password"], key: "influxdb.password")
        self.token = reader.string(influx["token"], key: "influxdb.token")
        self.org = reader.string(influx["org"], key: "influxdb.org")
        self.bucket = reader.string(influx["bucket"], key: "influxdb.bucket")
        if self.isVersion2 && (self.org == nil || self.bucket == nil) {
            reader.problem("influxdb.bucket", "InfluxDB 2 needs influxdb.org and influxdb.bucket (with influxdb.token)")
        }
    }

    public func describe(into description: inout ConfigurationDescription) {
        var parts = ["url: \(description.quote(self.url))", "database: \(description.quote(self.database))"]
        if let username = self.username { parts.append("username: \(description.quote(username))") }
        if let password = self.password { parts.append("password: \(description.secret(password))") }
        if let token = self.token { parts.append("token: \(description.secret(token))") }
        description.add("influxdb", description.object(parts))
    }

    public func makeBackend(_ context: BackendContext) -> any MetricsBackend {
        HTTPBackend(name: Self.name, destination: "InfluxDB at \(self.url)", context: context, acceptsLatePoints: true) {
            InfluxEncoder.requests($0, configuration: self, instance: $1)
        }
    }
}
