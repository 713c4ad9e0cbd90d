//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension DaemonConfiguration {
    /// Instance identity and the upstreams beyond Graphite and the console.
    static func readUpstreams(
        _ object: JSObject, into c: inout DaemonConfiguration, reader: inout Reader, environment: [String: String]
    ) {
        let explicitInstance = reader.string(object["instance"], key: "instance")
        c.instance = explicitInstance ?? Self.defaultInstance(environment: environment)
        // statsd's names unless the file asks for an instance: the same file gives the same Graphite names as statsd.
        c.graphiteInstance = explicitInstance != nil ? .path : .none
        var explicitMode = false
        if case .object(let graphite) = object["graphite"], let mode = reader.string(graphite["instance"], key: "graphite.instance") {
            explicitMode = true
            if let value = GraphiteInstance(rawValue: mode) {
                c.graphiteInstance = value
            } else {
                reader.problem("graphite.instance", "must be \"path\", \"tag\" or \"none\", got \"\(mode)\"")
            }
        }
        if !explicitMode, let warning = c.instanceWarning(environment: environment) { reader.warnings.append(warning) }
        func section(_ key: String) -> JSObject {
            switch object[key] {
            case .object(let value): return value
            case .undefined, .null: return JSObject()
            default:
                reader.problem(key, "must be an object")
                return JSObject()
            }
        }
        let uses = Set(c.backends)

        let hosted = section("hostedGraphite")
        if uses.contains(.hostedgraphite) {
            let key = reader.string(hosted["apiKey"], key: "hostedGraphite.apiKey") ?? environment["HOSTEDGRAPHITE_APIKEY"]
            if let key, !key.isEmpty {
                var h = HostedGraphiteConfiguration(apiKey: key)
                if let host = reader.string(hosted["host"], key: "hostedGraphite.host") { h.host = host }
                if let port = reader.integer(hosted["port"], key: "hostedGraphite.port", in: 1...65_535) { h.port = port }
                c.hostedGraphite = h
            } else {
                reader.problem("hostedGraphite.apiKey", "is required by the hostedgraphite backend (or set HOSTEDGRAPHITE_APIKEY)")
            }
        }

        let librato = section("librato")
        if uses.contains(.librato) {
            let user = reader.string(librato["user"], key: "librato.user") ?? reader.string(librato["email"], key: "librato.email")
                ?? environment["LIBRATO_USER"]
            let token = reader.string(librato["token"], key: "librato.token") ?? environment["LIBRATO_TOKEN"]
            if let user, let token, !user.isEmpty, !token.isEmpty {
                var l = LibratoConfiguration(
                    user: user, token: token,
                    source: reader.string(librato["source"], key: "librato.source") ?? environment["LIBRATO_SOURCE"] ?? c.instance)
                if let api = reader.string(librato["api"], key: "librato.api") { l.api = api }
                c.librato = l
            } else {
                reader.problem("librato.token", "librato.user (or email) and librato.token are required (or set LIBRATO_USER and LIBRATO_TOKEN)")
            }
        }

        let influx = section("influxdb")
        if uses.contains(.influxdb) {
            var i = InfluxDBConfiguration()
            if let url = reader.string(influx["url"], key: "influxdb.url") {
                i.url = url
            } else if let host = reader.string(influx["host"], key: "influxdb.host") {
                let port = reader.integer(influx["port"], key: "influxdb.port", in: 1...65_535) ?? 8086
                i.url = "http://\(host):\(port)"
            }
            while i.url.hasSuffix("/") { i.url.removeLast() }
            if let database = reader.string(influx["database"], key: "influxdb.database") { i.database = database }
            i.username = reader.string(influx["username"], key: "influxdb.username")
            i.password = reader.string(influx["password"], key: "influxdb.password")
            i.token = reader.string(influx["token"], key: "influxdb.token")
            i.org = reader.string(influx["org"], key: "influxdb.org")
            i.bucket = reader.string(influx["bucket"], key: "influxdb.bucket")
            if i.isVersion2 && (i.org == nil || i.bucket == nil) {
                reader.problem("influxdb.bucket", "InfluxDB 2 needs influxdb.org and influxdb.bucket (with influxdb.token)")
            }
            c.influxdb = i
        }

        let prometheus = section("prometheus")
        if let port = reader.integer(prometheus["port"], key: "prometheus.port", in: 0...65_535) { c.prometheus.port = port }
        if let address = reader.string(prometheus["address"], key: "prometheus.address") { c.prometheus.address = address }
        if case .array(let buckets) = prometheus["buckets"] {
            var values: [Double] = []
            for (index, bucket) in buckets.enumerated() {
                if let value = reader.number(bucket, key: "prometheus.buckets[\(index)]") { values.append(value) }
            }
            if values != values.sorted() || Set(values).count != values.count || values.isEmpty {
                reader.problem("prometheus.buckets", "must be a non-empty list of increasing numbers (seconds)")
            } else {
                c.prometheus.buckets = values
            }
        }

        let otlp = section("otlp")
        if uses.contains(.otlp) {
            var o = OTLPConfiguration()
            if let endpoint = reader.string(otlp["endpoint"], key: "otlp.endpoint") ?? environment["OTEL_EXPORTER_OTLP_ENDPOINT"] {
                o.endpoint = endpoint
            }
            while o.endpoint.hasSuffix("/") { o.endpoint.removeLast() }
            if case .object(let headers) = otlp["headers"] {
                for (key, value) in headers.pairs {
                    if let text = reader.string(value, key: "otlp.headers.\(key)") { o.headers.append("\(key): \(text)") }
                }
            }
            if let name = reader.string(otlp["serviceName"], key: "otlp.serviceName") { o.serviceName = name }
            c.otlp = o
        }

        switch object["repeater"] {
        case .undefined, .null:
            break
        case .array(let targets):
            for (index, target) in targets.enumerated() {
                guard case .object(let t) = target, let host = reader.string(t["host"], key: "repeater[\(index)].host"),
                    let port = reader.integer(t["port"], key: "repeater[\(index)].port", in: 1...65_535)
                else {
                    reader.problem("repeater[\(index)]", "must be an object like {host: \"10.0.0.2\", port: 8125}")
                    continue
                }
                c.repeater.append(RepeaterTarget(host: host, port: port))
            }
        default:
            reader.problem("repeater", "must be an array of {host, port} objects")
        }
        switch object["repeaterProtocol"] {
        case .undefined, .null, .string("udp4"), .string("udp6"): c.repeaterTCP = false
        case .string("tcp"): c.repeaterTCP = true
        case let value: reader.problem("repeaterProtocol", "must be \"udp4\", \"udp6\" or \"tcp\", got \(value.typeDescription)")
        }
        if uses.contains(.repeater) && c.repeater.isEmpty {
            reader.warnings.append("the repeater backend is on but repeater lists no target")
        }
        if !uses.contains(.repeater) && !c.repeater.isEmpty {
            // statsd forwards only when the repeater backend is loaded; Sidestat does the same.
            reader.warnings.append("repeater targets are ignored: add \"./backends/repeater\" to backends")
            c.repeater = []
        }

        if let port = reader.integer(object["httpPort"], key: "httpPort", in: 0...65_535) { c.httpPort = port }
        if let address = reader.string(object["httpAddress"], key: "httpAddress") { c.httpAddress = address }
    }
}
