//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import SidestatAggregation
@testable import SidestatBackends
import SidestatTestSupport
import Testing

/// The rules that keep `/metrics` (and remote write, which uses the same series) valid whatever a client sends.
struct PrometheusSeriesTests {
    func page(_ flushes: [FlushData], recorder: LogRecorder = LogRecorder()) async -> (PrometheusBackend, String) {
        let backend = PrometheusBackend(buckets: [0.1], distributionBuckets: [10], instance: "web.1", startupTime: 0)
        for data in flushes { await backend.flush(data, deadline: .now, logger: recorder.logger) }
        return (backend, backend.render())
    }

    func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    @Test("a tag name given twice keeps its last value: one label, never two of the same name")
    func repeatedTagNames() async {
        let (_, text) = await self.page([makeFlush(counters: [("req;env=prod;env=canary", 1)])])
        #expect(self.lines(text).contains(#"req_total{env="canary",sidestat_instance="web.1"} 1"#), "\(text)")
    }

    @Test(
        "reserved label names from tags become exported_<name>",
        arguments: ["le", "quantile", "job", "instance", "sidestat_instance", "__name__", "__meta_x"])
    func reservedNames(_ tag: String) async {
        let (_, text) = await self.page([
            makeFlush(counters: [("c;\(tag)=x", 1)], timers: [("t;\(tag)=x", [5])], distributions: [("d;\(tag)=x", [5])])
        ])
        #expect(self.lines(text).contains("c_total{exported_\(tag)=\"x\",sidestat_instance=\"web.1\"} 1"), "\(text)")
        #expect(
            self.lines(text).contains("t_seconds_bucket{exported_\(tag)=\"x\",sidestat_instance=\"web.1\",le=\"0.1\"} 1"),
            "\(text)")
        #expect(self.lines(text).contains("d_count{exported_\(tag)=\"x\",sidestat_instance=\"web.1\"} 1"), "\(text)")
    }

    @Test("bare tags and empty values get the value true: never the same series as the untagged key")
    func bareAndEmptyTags() async {
        let (_, text) = await self.page([
            makeFlush(counters: [("hits", 1), ("hits;canary", 100), ("hits;k=", 10), ("hits;=v", 1000)])
        ])
        let lines = self.lines(text)
        #expect(lines.contains(#"hits_total{sidestat_instance="web.1"} 1"#), "\(text)")
        #expect(lines.contains(#"hits_total{canary="true",sidestat_instance="web.1"} 100"#), "\(text)")
        #expect(lines.contains(#"hits_total{k="true",sidestat_instance="web.1"} 10"#), "\(text)")
        #expect(lines.contains(#"hits_total{_="v",sidestat_instance="web.1"} 1000"#), "\(text)")
        #expect(!text.contains(#"="""#), "no empty label value: \(text)")
    }

    @Test("a name a histogram derives (_count, _sum, _bucket) or another type holds: the second is refused, counted, warned once")
    func derivedNameClashes() async {
        let recorder = LogRecorder()
        let flush = makeFlush(
            counters: [("x", 2)], gauges: [("h_seconds_count", 5), ("x_total", 3), ("d_bucket", 1)],
            timers: [("h", [5])], distributions: [("d", [1])])
        let (backend, text) = await self.page([flush, flush, flush], recorder: recorder)
        let lines = self.lines(text)
        // Counters are folded first, then gauges, then timers: the counter x keeps x_total (the gauge x_total is
        // refused), and the gauges keep h_seconds_count and d_bucket (the timer h and the distribution d are refused).
        #expect(lines.contains(#"h_seconds_count{sidestat_instance="web.1"} 5"#), "\(text)")
        #expect(lines.filter { $0.hasPrefix("h_seconds_count") }.count == 1, "\(text)")
        #expect(!text.contains("h_seconds_bucket") && !text.contains("d_sum"), "\(text)")
        #expect(lines.contains(#"x_total{sidestat_instance="web.1"} 6"#) && lines.filter { $0.hasPrefix("x_total{") }.count == 1)
        #expect(lines.filter { $0.hasPrefix("# HELP") }.count == Set(lines.filter { $0.hasPrefix("# HELP") }).count)
        #expect(backend.status().first { $0.name == "name_clashes" }?.value == 9, "3 keys refused in each of 3 flushes")
        let warnings = recorder.matching("metric name is taken")
        #expect(warnings.count == 3, "one warning per refused family: \(warnings.map(\.metadata))")
        #expect(Set(warnings.compactMap { $0.metadata["metric"] }) == ["h_seconds", "d", "x_total"])
    }

    @Test("counters never go down: a negative interval is left out, counted, and warned at most once a minute")
    func negativeIncrements() async {
        let recorder = LogRecorder()
        let (backend, text) = await self.page(
            [
                makeFlush(counters: [("neg", 5)], timestamp: 1000), makeFlush(counters: [("neg", -10)], timestamp: 1010),
                makeFlush(counters: [("neg", -1)], timestamp: 1020), makeFlush(counters: [("neg", 2)], timestamp: 1030),
                makeFlush(counters: [("neg", -1)], timestamp: 1080),
            ], recorder: recorder)
        #expect(self.lines(text).contains(#"neg_total{sidestat_instance="web.1"} 7"#), "\(text)")
        #expect(backend.status().first { $0.name == "negative_increments" }?.value == 3)
        #expect(recorder.matching("negative increment").count == 2, "at 1010 and again at 1080, not at 1020")
    }

    @Test("no +Inf or NaN is served: an addition that would overflow is left out and counted")
    func nonFiniteValues() async {
        let (backend, text) = await self.page([
            makeFlush(counters: [("c", 1e308)], distributions: [("d", [1e308])]),
            makeFlush(counters: [("c", 1e308)], gauges: [("g", .infinity)], distributions: [("d", [1e308, 1])]),
        ])
        #expect(!text.contains("Inf\n") && !text.contains("NaN"), "\(text)")
        #expect(self.lines(text).contains(#"c_total{sidestat_instance="web.1"} 1e+308"#), "\(text)")
        #expect(self.lines(text).contains(#"d_sum{sidestat_instance="web.1"} 1e+308"#), "\(text)")
        #expect(self.lines(text).contains(#"d_count{sidestat_instance="web.1"} 2"#), "\(text)")
        #expect(backend.status().first { $0.name == "non_finite_values" }?.value == 3)
    }

    @Test("label values keep any character, escaped as the text format requires; names keep [a-zA-Z0-9_]")
    func escaping() async {
        let (_, text) = await self.page([makeFlush(gauges: [("g-ü.x;tag ü=a\"b\\c\nd", 1)])])
        #expect(self.lines(text).contains(#"g___x{sidestat_instance="web.1",tag__="a\"b\\c\nd"} 1"#), "\(text)")
    }

    @Test("two keys that become one series share it: counts add up")
    func sharedSeries() async {
        let (backend, text) = await self.page([makeFlush(counters: [("a.b", 1), ("a_b", 2), ("a-b", 4)])])
        #expect(self.lines(text).contains(#"a_b_total{sidestat_instance="web.1"} 7"#), "\(text)")
        #expect(backend.status().first { $0.name == "series" }?.value == 1)
    }

    @Test("random names and tags always give a valid page: sorted unique label names, no empty value, one HELP each")
    func randomKeys() async {
        var random = SplitMix64(seed: 22)
        let pieces = ["le", "env", "", "ü", "a\"b", "x\\y", "__name__", "sidestat_instance", "9lives", "k k", "job", "=", ";"]
        for _ in 0..<50 {
            var counters: [(String, Double)] = []
            var gauges: [(String, Double)] = []
            var timers: [(String, [Double])] = []
            for _ in 0..<20 {
                var key = ["h", "h_seconds_count", "req", "d_sum", "x.y", "ü"][Int(random.next() % 6)]
                for _ in 0..<Int(random.next() % 4) {
                    let name = pieces[Int(random.next() % UInt64(pieces.count))]
                    let value = pieces[Int(random.next() % UInt64(pieces.count))]
                    key += random.next() % 3 == 0 ? ";\(name)" : ";\(name)=\(value)"
                }
                switch random.next() % 3 {
                case 0: counters.append((key, Double(Int(random.next() % 200)) - 50))
                case 1: gauges.append((key, Double(random.next() % 100)))
                default: timers.append((key, [Double(random.next() % 1000)]))
                }
            }
            let (_, text) = await self.page([makeFlush(counters: counters, gauges: gauges, timers: timers)])
            #expect(PageLint.problems(text).isEmpty, "\(PageLint.problems(text))\n\(text)")
        }
    }
}

/// What Prometheus's parser would refuse in a page: a sample name with two HELP lines or in two families, a label
/// name given twice, unsorted or invalid, an empty label value, a series given twice, a value that is not finite.
enum PageLint {
    static func problems(_ text: String) -> [String] {
        var problems: [String] = []
        var helps: Set<String> = []
        var series: Set<String> = []
        var family = ""
        var familyNames: [String: String] = [:]
        for line in text.split(separator: "\n").map(String.init) {
            if line.hasPrefix("# HELP ") {
                family = String(line.dropFirst(7).prefix { $0 != " " })
                if !helps.insert(family).inserted { problems.append("second HELP for \(family)") }
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let brace = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}") else {
                problems.append("no labels: \(line)")
                continue
            }
            let name = String(line[..<brace])
            if let owner = familyNames[name], owner != family { problems.append("\(name) in \(owner) and \(family)") }
            familyNames[name] = family
            if !series.insert(String(line[..<close])).inserted { problems.append("series twice: \(line)") }
            let value = line[line.index(after: close)...].dropFirst()
            if value.contains("Inf") || value.contains("NaN") { problems.append("not finite: \(line)") }
            // Labels: name="value" pairs, values escaped.
            var names: [String] = []
            var index = line.index(after: brace)
            while index < close {
                let equals = line[index...].firstIndex(of: "=")!
                let labelName = String(line[index..<equals])
                var cursor = line.index(equals, offsetBy: 2)
                var value = ""
                while line[cursor] != "\"" {
                    if line[cursor] == "\\" { cursor = line.index(after: cursor) }
                    value.append(line[cursor])
                    cursor = line.index(after: cursor)
                }
                if value.isEmpty { problems.append("empty value of \(labelName): \(line)") }
                if labelName.isEmpty || labelName.first!.isNumber
                    || !labelName.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
                {
                    problems.append("invalid label name \(labelName)")
                }
                names.append(labelName)
                index = line.index(after: cursor)
                if index < close, line[index] == "," { index = line.index(after: index) }
            }
            let withoutLe = names.filter { $0 != "le" }
            if withoutLe != withoutLe.sorted() { problems.append("labels not sorted: \(line)") }
            if Set(names).count != names.count { problems.append("label name twice: \(line)") }
        }
        return problems
    }
}
