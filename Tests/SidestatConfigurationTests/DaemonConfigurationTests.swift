//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatBackends
import SidestatConfiguration
import Testing

struct DaemonConfigurationTests {
    func configuration(_ source: String) throws -> (DaemonConfiguration, [String]) {
        guard case .object(let object) = try ConfigScript.evaluate(source, environment: ["PORT": "9000"]) else {
            throw ConfigScriptError(line: 1, column: 1, message: "not an object")
        }
        let result = try DaemonConfiguration.from(object, upstreams: BackendRegistry.sections.map { $0 })
        return (result.configuration, result.warnings)
    }

    @Test("statsd's defaults, with loopback addresses (DEVIATIONS #18)")
    func defaults() throws {
        let (c, warnings) = try self.configuration("{}")
        #expect(warnings.isEmpty)
        #expect(c.listeners == [ListenerConfiguration()])
        #expect(c.listeners[0].address == "127.0.0.1")
        #expect(c.listeners[0].port == 8125)
        #expect(c.managementAddress == "127.0.0.1")
        #expect(c.managementPort == 8126)
        #expect(c.backends == ["graphite"])
        #expect(c.flushInterval == .seconds(10))
        #expect(c.percentThreshold == [90])
        #expect(c.upstream(GraphiteConfiguration.self)?.host == nil)
        #expect(c.shutdownTimeout == .seconds(10))
    }

    @Test("honours an address, servers, numeric strings from the environment and statsd's `|| default`")
    func listeners() throws {
        let (c, _) = try self.configuration(
            """
            { servers: [ { server: './servers/udp', address: '0.0.0.0', port: process.env.PORT },
                         { server: './servers/tcp', port: 0 },
                         { server: './servers/udp', address_ipv6: true, port: 8127 } ],
              flushInterval: 0, mgmt_port: '8999' }
            """)
        #expect(c.listeners.count == 3)
        #expect(c.listeners[0].address == "0.0.0.0")
        #expect(c.listeners[0].port == 9000)
        #expect(c.listeners[1].transport == .tcp)
        #expect(c.listeners[1].port == 8125)  // statsd's `port || 8125`
        #expect(c.listeners[2].address == "::1")
        #expect(c.flushInterval == .seconds(10))
        #expect(c.percentThreshold == [90])
        #expect(c.managementPort == 8999)
    }

    @Test("deleteIdleStats turns every delete on unless one is set on its own")
    func deleteIdleStats() throws {
        let (c, _) = try self.configuration("{ deleteIdleStats: true, deleteGauges: false }")
        #expect(c.deleteCounters && c.deleteTimers && c.deleteSets && !c.deleteGauges)
    }

    @Test("gaugesMaxTTL that is not an integer above 1 becomes 1, with a warning, as statsd does")
    func gaugesMaxTTL() throws {
        let (c, warnings) = try self.configuration("{ gaugesMaxTTL: 2.5 }")
        #expect(c.gaugesMaxTTL == 1)
        #expect(warnings.contains { $0.contains("gaugesMaxTTL") })
        #expect(try self.configuration("{ gaugesMaxTTL: 3 }").0.gaugesMaxTTL == 3)
    }

    @Test(
        "an unknown key gets a warning that names it and the known key it most likely meant",
        arguments: [
            ("graphitehost", " (did you mean \"graphiteHost\"?)"), ("backend", " (did you mean \"backends\"?)"),
            ("flushIntervall", " (did you mean \"flushInterval\"?)"), ("somethingElse", ""),
        ])
    func unknownKey(key: String, hint: String) throws {
        let (_, warnings) = try self.configuration("{ \(key): 'typo' }")
        #expect(warnings == ["unknown configuration key \"\(key)\" is ignored\(hint)"])
    }

    @Test("percentThreshold 0 or false is an error, not statsd's silent 90", arguments: ["0", "false", "[90, 0]"])
    func percentThresholdZero(value: String) throws {
        #expect(throws: ConfigurationError.self) { try self.configuration("{ percentThreshold: \(value) }") }
    }

    @Test(
        "a wrong type or value names the key and what is allowed",
        arguments: [
            ("{ port: 'eighty' }", "port", "must be a number"),
            ("{ port: 70000 }", "port", "from 0 to 65535"),
            ("{ percentThreshold: [90, 150] }", "percentThreshold[1]", "at most 100"),
            ("{ percentThreshold: [-100] }", "percentThreshold[0]", "above -100"),
            ("{ percentThreshold: [0, 90] }", "percentThreshold[0]", "not 0"),
            ("{ backends: ['./backends/nope'] }", "backends[0]", "./backends/graphite"),
            ("{ deleteCounters: 'yes' }", "deleteCounters", "true or false"),
            ("{ graphiteProtocol: 'udp' }", "graphiteProtocol", "\"text\" or \"pickle\""),
            ("{ server: './servers/http' }", "server", "./servers/tcp"),
            ("{ histogram: [{ metric: 'a', bins: [1, 'x'] }] }", "histogram[0].bins[1]", "number or \"inf\""),
            ("{ graphite: { legacyNamespace: 'no' } }", "graphite.legacyNamespace", "true or false"),
            ("{ healthStatus: 'maybe' }", "healthStatus", "\"up\" or \"down\""),
            ("{ graphite: { instance: 'segment' } }", "graphite.instance", "\"path\", \"tag\" or \"none\""),
            ("{ backends: ['hostedgraphite'] }", "hostedGraphite.apiKey", "HOSTEDGRAPHITE_APIKEY"),
            ("{ backends: ['librato'], librato: { user: 'u' } }", "librato.token", "LIBRATO_TOKEN"),
            ("{ backends: ['influxdb'], influxdb: { token: 't' } }", "influxdb.bucket", "influxdb.org and influxdb.bucket"),
            ("{ backends: ['prometheus'], prometheus: { buckets: [1, 0.5] } }", "prometheus.buckets", "increasing"),
            ("{ backends: ['repeater'], repeater: [{ host: 'a' }] }", "repeater[0]", "{host: "),
            ("{ backends: ['repeater'], repeaterProtocol: 'sctp' }", "repeaterProtocol", "\"udp4\", \"udp6\" or \"tcp\""),
            ("{ backends: ['./backends/kafka'] }", "backends[0]", "\"./backends/influxdb\", \"./backends/prometheus\", \"./backends/otlp\""),
        ])
    func rejects(source: String, key: String, message: String) {
        do {
            _ = try self.configuration(source)
            Issue.record("accepted \(source)")
        } catch let error as ConfigurationError {
            #expect(error.problems.contains { $0.key == key && $0.message.contains(message) }, "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("every problem is reported at once")
    func allProblems() {
        do {
            _ = try self.configuration("{ port: -1, mgmt_port: 'x', flushInterval: 'soon' }")
            Issue.record("accepted")
        } catch let error as ConfigurationError {
            #expect(error.problems.map(\.key) == ["port", "mgmt_port", "flushInterval"])
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("instance: $DYNO, else the host name; a path segment in Graphite when the file sets one, else statsd's layout")
    func instance() throws {
        func load(_ source: String, _ environment: [String: String]) throws -> DaemonConfiguration {
            guard case .object(let object) = try ConfigScript.evaluate(source, environment: environment) else {
                throw ConfigScriptError(line: 1, column: 1, message: "not an object")
            }
            return try DaemonConfiguration.from(
                object, environment: environment, upstreams: BackendRegistry.sections.map { $0 }
            ).configuration
        }
        let plain = try load("{}", [:])
        #expect(plain.instance == DaemonConfiguration.defaultInstance(environment: [:]))
        #expect(!plain.instance.isEmpty)
        #expect(plain.upstream(GraphiteConfiguration.self)?.instance == GraphiteConfiguration.Instance.none)
        let dyno = try load("{}", ["DYNO": "web.3"])
        #expect(dyno.instance == "web.3")
        #expect(dyno.upstream(GraphiteConfiguration.self)?.instance == GraphiteConfiguration.Instance.none)  // statsd's names, whatever $DYNO says
        let named = try load("{ instance: 'api' }", ["DYNO": "web.3"])
        #expect(named.upstream(GraphiteConfiguration.self)?.instance == .path)
        let kept = try load("{ graphite: { instance: 'none' } }", ["DYNO": "web.3"])
        #expect(kept.upstream(GraphiteConfiguration.self)?.instance == GraphiteConfiguration.Instance.none)
        let tagged = try load("{ instance: 'api-' + process.env.DYNO, graphite: { instance: 'tag' } }", ["DYNO": "web.3"])
        #expect(tagged.instance == "api-web.3")
        #expect(tagged.upstream(GraphiteConfiguration.self)?.instance == .tag)
    }

    @Test("upstream sections: InfluxDB 1 and 2, Prometheus buckets, OTLP headers, repeater targets")
    func upstreams() throws {
        let (c, warnings) = try self.configuration(
            """
            { backends: ['influxdb', 'prometheus', 'otlp', './backends/repeater'],
              influxdb: { host: 'db', port: 8087, database: 'apps', username: 'u', password: 'p' },
              prometheus: { port: 9300, buckets: [0.1, 1, 10] },
              otlp: { endpoint: 'https://otlp.example.com/', headers: { 'x-key': 'k' }, serviceName: 'shop' },
              repeater: [{ host: '10.0.0.2', port: 8125 }], repeaterProtocol: 'tcp', httpPort: 8080 }
            """)
        #expect(warnings.isEmpty)
        #expect(c.backends == ["influxdb", "prometheus", "otlp", "repeater"])
        #expect(c.upstream(InfluxDBConfiguration.self)?.url == "http://db:8087")
        #expect(c.upstream(InfluxDBConfiguration.self)?.database == "apps")
        #expect(c.upstream(InfluxDBConfiguration.self)?.username == "u" && c.upstream(InfluxDBConfiguration.self)?.password == "p")
        #expect(c.upstream(InfluxDBConfiguration.self)?.isVersion2 == false)
        #expect(c.upstream(PrometheusConfiguration.self)?.port == 9300)
        #expect(c.upstream(PrometheusConfiguration.self)?.buckets == [0.1, 1, 10])
        #expect(c.upstream(OTLPConfiguration.self)?.endpoint == "https://otlp.example.com")
        #expect(c.upstream(OTLPConfiguration.self)?.headers == ["x-key: k"])
        #expect(c.upstream(OTLPConfiguration.self)?.serviceName == "shop")
        #expect(c.upstream(RepeaterConfiguration.self)?.targets.map { "\($0.host):\($0.port)" } == ["10.0.0.2:8125"])
        #expect(c.upstream(RepeaterConfiguration.self)?.tcp == true)
        #expect(c.httpPort == 8080)

        let (ignored, ignoredWarnings) = try self.configuration("{ repeater: [{ host: 'a', port: 1 }] }")
        #expect(ignored.upstream(RepeaterConfiguration.self) == nil)
        #expect(ignoredWarnings.contains { $0.contains("./backends/repeater") })
    }
}
