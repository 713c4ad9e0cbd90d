//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatConfiguration
import Testing

struct DaemonConfigurationTests {
    func configuration(_ source: String) throws -> (DaemonConfiguration, [String]) {
        guard case .object(let object) = try ConfigScript.evaluate(source, environment: ["PORT": "9000"]) else {
            throw ConfigScriptError(line: 1, column: 1, message: "not an object")
        }
        let result = try DaemonConfiguration.from(object)
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
        #expect(c.backends == [.graphite])
        #expect(c.flushIntervalMilliseconds == 10_000)
        #expect(c.percentThreshold == [90])
        #expect(c.graphite.host == nil)
        #expect(c.shutdownTimeoutMilliseconds == 10_000)
    }

    @Test("honours an address, servers, numeric strings from the environment and statsd's `|| default`")
    func listeners() throws {
        let (c, _) = try self.configuration(
            """
            { servers: [ { server: './servers/udp', address: '0.0.0.0', port: process.env.PORT },
                         { server: './servers/tcp', port: 0 },
                         { server: './servers/udp', address_ipv6: true, port: 8127 } ],
              flushInterval: 0, percentThreshold: 0, mgmt_port: '8999' }
            """)
        #expect(c.listeners.count == 3)
        #expect(c.listeners[0].address == "0.0.0.0")
        #expect(c.listeners[0].port == 9000)
        #expect(c.listeners[1].transport == .tcp)
        #expect(c.listeners[1].port == 8125)  // statsd's `port || 8125`
        #expect(c.listeners[2].address == "::1")
        #expect(c.flushIntervalMilliseconds == 10_000)
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

    @Test("an unknown key gets a warning that names it")
    func unknownKey() throws {
        let (_, warnings) = try self.configuration("{ graphitehost: 'typo' }")
        #expect(warnings == ["unknown configuration key \"graphitehost\" is ignored"])
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
}
