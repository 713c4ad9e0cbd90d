//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// `sidestat start`, `run` and `check` with real child processes.
    struct RunnerTests {
        /// A directory holding `files`, and a `sidestat` run in it.
        func start(
            _ arguments: [String], files: [String: String], environment: [String: String] = [:], timeout: Double = 30
        ) throws -> (status: Int32, output: String, directory: URL) {
            let directory = TestPaths.temporaryDirectory()
            for (name, text) in files {
                try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
            }
            var env = ProcessInfo.processInfo.environment
            env.removeValue(forKey: "PORT")
            for (key, value) in environment { env[key] = value }
            let process = try SidestatProcess(
                arguments: arguments, environment: env, waitForUp: false, workingDirectory: directory)
            let status = process.waitForExit(timeout: timeout)
            return (status, process.output, directory)
        }

        /// Runs `executable` in `directory` without $PORT and $PROCFILE; its exit status and merged output.
        static func capture(_ executable: String, _ arguments: [String], in directory: URL) throws -> (Int32, String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            process.currentDirectoryURL = directory
            var environment = ProcessInfo.processInfo.environment
            environment.removeValue(forKey: "PORT")
            environment.removeValue(forKey: "PROCFILE")
            process.environment = environment
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, text)
        }

        /// The lines printed under `name`, without the time prefix.
        static func lines(_ output: String, _ name: String) -> [String] {
            output.split(separator: "\n").compactMap { line in
                let parts = line.split(separator: "|", maxSplits: 1)
                guard parts.count == 2, parts[0].dropFirst(9).trimmingCharacters(in: .whitespaces) == name else {
                    return nil
                }
                return String(parts[1].dropFirst())
            }
        }

        /// The pids of the children, from the `started (pid=N)` lines.
        static func pids(_ output: String) -> [Int32] {
            output.split(separator: "\n").compactMap { line in
                guard let range = line.range(of: "started (pid=") else { return nil }
                return Int32(line[range.upperBound...].prefix { $0.isNumber })
            }
        }

        /// Processes whose process group is one of `groups` (the children's groups).
        static func survivors(inGroups groups: [Int32]) -> [String] {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return entries.compactMap { entry -> String? in
                guard Int32(entry) != nil,
                    let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                    let close = stat.lastIndex(of: ")")
                else { return nil }
                let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
                guard fields.count > 3, let group = Int32(fields[2]), groups.contains(group), fields[0] != "Z" else {
                    return nil
                }
                return "\(entry): \(stat.prefix(60))"
            }
        }

        @Test("prefixes are aligned, PORT follows the type's index and instance, .env is loaded")
        func prefixesPortsAndEnv() throws {
            let (status, output, _) = try self.start(
                ["start", "--no-statsd", "-c", "worker=2"],
                files: [
                    "Procfile": "web: echo port=$PORT foo=$FOO quoted=\"$QUOTED\" empty=[$EMPTY] exported=$EXPORTED; sleep 1\nworker: echo port=$PORT; sleep 30\n",
                    ".env": "FOO=bar\nQUOTED=\"a b\"\nEMPTY=\nexport EXPORTED=yes\n# comment\n",
                ])
            #expect(status == 0, "\(output)")
            #expect(Self.lines(output, "web.1") == ["port=5000 foo=bar quoted=a b empty=[] exported=yes"])
            #expect(Self.lines(output, "worker.1") == ["port=5100"])
            #expect(Self.lines(output, "worker.2") == ["port=5101"])
            // Every line: `HH:MM:SS <name padded to the longest> | `.
            for line in output.split(separator: "\n") {
                #expect(line.range(of: #"^\d\d:\d\d:\d\d (web\.1   |worker\.1|worker\.2|system  ) \| "#, options: .regularExpression) != nil, "\(line)")
            }
        }

        @Test("the exit code is the first process's; $PORT sets the base port")
        func exitCode() throws {
            let (status, output, _) = try self.start(
                ["start", "--no-statsd"], files: ["Procfile": "web: echo $PORT; exit 3\nslow: sleep 30\n"],
                environment: ["PORT": "7000"])
            #expect(status == 3, "\(output)")
            #expect(Self.lines(output, "web.1") == ["7000"])
            #expect(output.contains("web.1 stopped (rc=3)"))
            #expect(output.contains("sending SIGTERM to slow.1"))
        }

        @Test("a child that ignores SIGTERM gets SIGKILL after the grace period; no process of its group is left")
        func graceThenKill() throws {
            let started = Date()
            let (status, output, _) = try self.start(
                ["start", "--no-statsd", "-t", "2"],
                files: [
                    "Procfile":
                        "stubborn: trap '' TERM; sleep 60 & sleep 60\nforker: sleep 300 & sleep 300 & sleep 1; exit 0\n"
                ])
            let elapsed = Date().timeIntervalSince(started)
            #expect(status == 0, "\(output)")
            #expect(output.contains("sending SIGTERM to stubborn.1"))
            #expect(output.contains("sending SIGKILL to stubborn.1"))
            #expect(elapsed > 2.5 && elapsed < 15, "took \(elapsed) s")
            let groups = Self.pids(output)
            #expect(groups.count == 2)
            #expect(Self.survivors(inGroups: groups).isEmpty, "\(Self.survivors(inGroups: groups))")
        }

        @Test("SIGTERM to Sidestat stops the children first, then the final flush reaches carbon; exit 143 as honcho")
        func signalAndFinalFlush() throws {
            let sink = try LineSink()
            let directory = TestPaths.temporaryDirectory()
            try testConfig(graphitePort: sink.port, flushInterval: 60_000)
                .write(to: directory.appendingPathComponent("statsd.js"), atomically: true, encoding: .utf8)
            // bash, for /dev/udp.
            try "web: exec bash -c 'trap \"echo draining; printf drained:1\\\\|c > /dev/udp/$STATSD_HOST/$STATSD_PORT; exit 0\" TERM; echo trapping; while true; do sleep 0.1; done'\n"
                .write(to: directory.appendingPathComponent("Procfile"), atomically: true, encoding: .utf8)
            let process = try SidestatProcess(
                arguments: ["start", "--config", "statsd.js"], waitForUp: true, workingDirectory: directory)
            #expect(process.waitForOutput("| trapping"))
            let status = process.terminate(timeout: 20)
            #expect(status == 143, "\(process.output)")
            #expect(process.output.contains("web.1    | draining") || process.output.contains("web.1 | draining"))
            #expect(sink.lines.value("stats_counts.drained") == "1", "\(process.output)")
        }

        @Test("the same Procfile under PyPI honcho and sidestat start --no-statsd: same ports, same prefix format")
        func sameAsHoncho() throws {
            let honcho = TestPaths.packageRoot.appendingPathComponent(".build/venvs/honcho/bin/honcho").path
            guard FileManager.default.isExecutableFile(atPath: honcho) else {
                throw TestFailure("\(honcho) is missing: run scripts/test, which installs honcho")
            }
            let procfile = "web: echo web $PORT; sleep 1\nworker: echo worker $PORT; sleep 5\nclock: echo clock $PORT; sleep 5\n"
            let (status, output, directory) = try self.start(
                ["start", "--no-statsd", "--no-color", "-c", "worker=2,clock=1"], files: ["Procfile": procfile])
            #expect(status == 0)
            let (_, honchoOutput) = try Self.capture(honcho, ["start", "--no-colour", "-c", "worker=2,clock=1"], in: directory)
            func appLines(_ text: String) -> [String] {
                text.split(separator: "\n").filter { !$0.contains(" system ") }.map { String($0.dropFirst(9)) }.sorted()
            }
            #expect(appLines(output) == appLines(honchoOutput), "sidestat:\n\(output)\nhoncho:\n\(honchoOutput)")
            #expect(appLines(output).count == 4)
        }

        @Test("side by side with honcho: PROCFILE and escapes in .env, -c, -q and check give the same lines and codes")
        func sameLinesAsHoncho() throws {
            let honcho = TestPaths.packageRoot.appendingPathComponent(".build/venvs/honcho/bin/honcho").path
            guard FileManager.default.isExecutableFile(atPath: honcho) else {
                throw TestFailure("\(honcho) is missing: run scripts/test, which installs honcho")
            }
            let files = [
                "Procfile.alt": """
                    web: echo "web $PORT $ANIMAL $QUOTED $SINGLE"; sleep 1
                    worker: echo "worker $PORT"; sleep 5
                    hidden: echo "never shown"; sleep 5

                    """,
                ".env": "PROCFILE=Procfile.alt\nANIMAL=\\\"tiger\\\"\nQUOTED=\"a b\"\nSINGLE='c d'\n",
            ]
            /// Runs `arguments` in a directory holding `files`; the output with times, pids and colour taken out.
            func normalized(_ executable: String, _ arguments: [String]) throws -> (Int32, [String]) {
                let directory = TestPaths.temporaryDirectory()
                for (name, text) in files {
                    try text.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
                }
                let (status, text) = try Self.capture(executable, arguments, in: directory)
                let lines = text.split(separator: "\n").map { line -> String in
                    var line = String(line)
                    for (pattern, replacement) in [
                        (#"^\d\d:\d\d:\d\d "#, ""), (#"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+\] "#, ""),
                        (#"pid=\d+"#, "pid=N"), (#"pid \d+"#, "pid N"),
                    ] {
                        line = line.replacingOccurrences(of: pattern, with: replacement, options: .regularExpression)
                    }
                    return line
                }
                return (status, lines.sorted())
            }
            let start = ["start", "--no-colour", "-cworker=2", "-q", "hidden"]
            let (honchoStatus, honchoLines) = try normalized(honcho, start)
            let (status, lines) = try normalized(TestPaths.sidestat, start + ["--no-statsd"])
            #expect(status == honchoStatus)
            #expect(lines == honchoLines, "sidestat:\n\(lines.joined(separator: "\n"))\nhoncho:\n\(honchoLines.joined(separator: "\n"))")
            #expect(lines.contains("web.1    | web 5000 \"tiger\" a b c d"), "\(lines)")
            #expect(!lines.contains { $0.contains("never shown") })
            let (honchoCheck, honchoCheckLines) = try normalized(honcho, ["check"])
            let (check, checkLines) = try normalized(TestPaths.sidestat, ["check"])
            #expect(check == honchoCheck)
            #expect(checkLines == honchoCheckLines)
            #expect(checkLines == ["[INFO] Valid procfile detected (web, worker, hidden)"])
        }

        @Test("a process's last output lines come before its stopped line")
        func stoppedAfterOutput() throws {
            let (status, output, _) = try self.start(
                ["start", "--no-statsd"],
                files: ["Procfile": "web: for i in 1 2 3 4 5 6 7 8; do echo line$i; done\nother: sleep 5\n"])
            #expect(status == 0)
            let lines = output.split(separator: "\n").map(String.init)
            let last = try #require(lines.firstIndex { $0.hasSuffix("| line8") }, "\(output)")
            let stopped = try #require(lines.firstIndex { $0.hasSuffix("web.1 stopped (rc=0)") }, "\(output)")
            #expect(last < stopped, "\(output)")
        }

        @Test(
            "bad input: a one-line error and a non-zero exit, never a hang",
            arguments: [
                ([String](), [String: String](), "no Procfile at Procfile"),
                (["start"], ["Procfile": "# nothing here\n"], "defines no process to start"),
                (["start", "nope"], ["Procfile": "web: true\n"], "process type 'nope' does not exist"),
                (["start", "-f", "missing"], ["Procfile": "web: true\n"], "no Procfile at missing"),
                (["start", "-c", "web=x"], ["Procfile": "web: true\n"], "concurrency must look like"),
            ])
        func badInput(arguments: [String], files: [String: String], message: String) throws {
            let (status, output, _) = try self.start(
                (arguments.isEmpty ? ["start"] : arguments) + ["--no-statsd"], files: files, timeout: 10)
            #expect(status == 1)
            #expect(output.contains(message), "\(output)")
            #expect(output.split(separator: "\n").count == 1, "\(output)")
        }

        @Test("a command that does not exist ends the run with its shell's exit code")
        func missingCommand() throws {
            let (status, output, _) = try self.start(
                ["start", "--no-statsd"], files: ["Procfile": "web: no-such-command-here\nother: sleep 30\n"],
                timeout: 15)
            #expect(status == 127, "\(output)")
            #expect(output.contains("not found"))
        }

        @Test("run: one command with the server alongside, its exit code, STATSD_* set; check lists the types")
        func runAndCheck() throws {
            let config = testConfig(graphitePort: nil)
            let (status, output, _) = try self.start(
                ["run", "--config", "s.js", "--", "sh", "-c", "echo host=$STATSD_HOST port=$STATSD_PORT dd=$DD_DOGSTATSD_PORT; exit 4"],
                files: ["s.js": config])
            #expect(status == 4, "\(output)")
            let port = config.split(separator: "\n").first { $0.contains("port:") && !$0.contains("mgmt") }!
                .filter(\.isNumber)
            #expect(output.contains("host=127.0.0.1 port=\(port) dd=\(port)"), "\(output)")
            let (checkStatus, checkOutput, _) = try self.start(
                ["check"], files: ["Procfile": "web: a\nworker: b\nrelease: c\n"])
            #expect(checkStatus == 0)
            // honcho's log line, on standard error: `2026-11-29 18:57:52 [1234] [INFO] ...`.
            #expect(
                checkOutput.range(
                    of: #"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+\] \[INFO\] Valid procfile detected \(web, worker, release\)\n$"#,
                    options: .regularExpression) != nil, "\(checkOutput)")
        }
    }
}
