//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatSupport
import Logging
import ServiceLifecycle
import SidestatAggregation
import SidestatConfiguration

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// statsd's `keyFlush`: every interval, the busiest keys (`<date> count=N key=K`, the top `percent`%), to a log
/// file or standard output; the counts start again each interval.
struct KeyFlushService: Service {
    let configuration: KeyFlushConfiguration
    let aggregator: Aggregator
    let output: any TextOutput
    let logger: Logger

    func run() async {
        while true {
            do {
                try await cancelWhenGracefulShutdown {
                    try await Task.sleep(for: self.configuration.interval)
                }
            } catch {
                return
            }
            let counts = self.aggregator.takeKeyCounts().sorted { $0.count > $1.count }
            let date = WallClock.nodeDateString(unixSeconds: WallClock.unixSeconds())
            let limit = Double(counts.count) * (self.configuration.percent / 100)
            var text = ""
            var index = 0
            while Double(index) < limit, index < counts.count {
                text += "\(date) count=\(counts[index].count) key=\(counts[index].key)\n"
                index += 1
            }
            guard !text.isEmpty else { continue }
            if let path = self.configuration.logPath {
                guard let file = fopen(path, "a") else {
                    self.logger.warning("Cannot write the keyFlush log", metadata: ["keyFlush.log": "\(path)"])
                    continue
                }
                fputs(text, file)
                fclose(file)
            } else {
                self.output.write(text)
            }
        }
    }
}
