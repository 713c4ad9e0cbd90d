//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Testing

extension EndToEnd {
    /// What a newcomer copies and types: every configuration block of the README and docs/, the examples' READMEs
    /// against their files, and the command line's answers to typos.
    struct DocumentationTests {
        /// The documents whose configuration blocks are checked.
        static func documents() throws -> [String] {
            let docs = try FileManager.default.contentsOfDirectory(
                atPath: TestPaths.packageRoot.appendingPathComponent("docs").path)
            return ["README.md"] + docs.filter { $0.hasSuffix(".md") }.sorted().map { "docs/" + $0 }
        }

        /// Every ```js and ```json block of `document` (a path under the package's root).
        static func configBlocks(in document: String) throws -> [(config: String, environment: [String: String])] {
            try Self.configBlocks(
                text: String(contentsOf: TestPaths.packageRoot.appendingPathComponent(document), encoding: .utf8))
        }

        /// Every ```js and ```json block of `text`, with the environment named by a
        /// `<!-- check-config: NAME=value ... -->` comment on the line before it (none without one).
        static func configBlocks(text: String) throws -> [(config: String, environment: [String: String])] {
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            var blocks: [(String, [String: String])] = []
            var index = 0
            while index < lines.count {
                defer { index += 1 }
                guard lines[index] == "```js" || lines[index] == "```json" else { continue }
                var environment: [String: String] = [:]
                if index > 0, lines[index - 1].hasPrefix("<!-- check-config") {
                    let marker = lines[index - 1].dropFirst("<!-- check-config".count).dropLast("-->".count)
                    for pair in marker.split(whereSeparator: { $0 == " " || $0 == ":" }) {
                        let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                        if parts.count == 2 { environment[parts[0]] = parts[1] }
                    }
                }
                let end = try #require(lines[(index + 1)...].firstIndex(of: "```"), "a block is not closed")
                blocks.append((lines[(index + 1)..<end].joined(separator: "\n"), environment))
                index = end
            }
            return blocks
        }

        @Test("every configuration block in README.md and docs/ passes check-config, with no warning")
        func configBlocks() throws {
            var checked: [String: Int] = [:]
            for document in try Self.documents() {
                for (config, environment) in try Self.configBlocks(in: document) {
                    let check = try SidestatProcess(
                        arguments: ["check-config", try writeConfig(config)], environment: environment, waitForUp: false)
                    #expect(check.waitForExit() == 0, "\(document):\n\(config)\n\(check.output)")
                    #expect(!check.output.contains("warning"), "\(document):\n\(config)\n\(check.output)")
                    // Keys, tokens and passwords are printed as ***.
                    for (name, secret) in environment
                    where ["KEY", "TOKEN", "PASSWORD", "SECRET", "AUTH"].contains(where: name.contains)
                        && check.output.contains(secret)
                    {
                        Issue.record("\(document): check-config prints $\(name): \(check.output)")
                    }
                    checked[document, default: 0] += 1
                }
            }
            // The pages that must have examples do: one per upstream section, and the README's.
            #expect((checked["docs/upstreams.md"] ?? 0) >= 12, "\(checked)")
            #expect((checked["README.md"] ?? 0) >= 2, "\(checked)")
            #expect((checked["docs/configuration.md"] ?? 0) >= 1, "\(checked)")
        }

        @Test("a block that check-config refuses is caught: the extractor reads what the test runs")
        func extractorFindsBadBlocks() throws {
            let blocks = try Self.configBlocks(
                text: """
                    Text.

                    <!-- check-config: TOKEN=abc -->
                    ```js
                    { backends: ["librato"], librato: { user: "u", token: process.env.TOKEN }, flushInterval: "soon" }
                    ```

                        an indented block is a command, not a configuration
                    ```json
                    {"port": 8125}
                    ```
                    """)
            #expect(blocks.count == 2)
            #expect(blocks.last?.environment == [:])
            #expect(blocks.first?.environment == ["TOKEN": "abc"])
            let check = try SidestatProcess(
                arguments: ["check-config", try writeConfig(try #require(blocks.first).config)],
                environment: blocks[0].environment, waitForUp: false)
            #expect(check.waitForExit() == 2)
            #expect(check.output.contains("flushInterval"), "\(check.output)")
        }

        /// Runs `sidestat ARGUMENTS` in `directory`; its status and merged output.
        func sidestat(_ arguments: [String], in directory: URL = TestPaths.temporaryDirectory()) -> (Int32, String) {
            (try? RunnerTests.capture(TestPaths.sidestat, arguments, in: directory)) ?? (-1, "cannot run sidestat")
        }

        @Test(
            "a mistyped command gets the nearest one and exit code 2, not a configuration error",
            arguments: [("strat", "start"), ("serv", "serve"), ("chek", "check"), ("check-confg", "check-config"), ("rnu", "run"), ("verison", "version")])
        func typo(typed: String, meant: String) {
            let (status, output) = self.sidestat([typed])
            #expect(status == 2, "\(output)")
            #expect(output.contains("did you mean \"\(meant)\"?"), "\(output)")
            #expect(!output.contains("configuration error"), "\(output)")
            #expect(output.split(separator: "\n").count <= 2, "\(output)")
        }

        @Test("a first argument that is an existing file is a configuration file, whatever its name")
        func fileNamedLikeACommand() throws {
            let directory = TestPaths.temporaryDirectory()
            try "{ flushInterval: 'soon' }".write(
                to: directory.appendingPathComponent("strat"), atomically: true, encoding: .utf8)
            let (status, output) = self.sidestat(["strat"], in: directory)
            #expect(status == 2)
            #expect(output.contains("configuration error") && output.contains("flushInterval"), "\(output)")
            #expect(!output.contains("did you mean"), "\(output)")
            // A name close to no command is read as a file, as statsd takes its argument.
            let (missing, missingOutput) = self.sidestat(["production.js"])
            #expect(missing == 2)
            #expect(missingOutput.contains("production.js") && missingOutput.contains("cannot read"), "\(missingOutput)")
        }

        @Test("sidestat help COMMAND is sidestat COMMAND --help", arguments: ["serve", "check-config", "start", "run", "check"])
        func helpCommand(command: String) {
            let (status, help) = self.sidestat(["help", command])
            let (flagStatus, flagHelp) = self.sidestat([command, "--help"])
            #expect(status == 0 && flagStatus == 0)
            #expect(help == flagHelp)
            #expect(help.contains("USAGE: sidestat \(command)"), "\(help)")
        }

        @Test("sidestat help lists the commands and the exit codes; help with a typo suggests the command")
        func helpOverview() {
            let (status, overview) = self.sidestat(["help"])
            #expect(status == 0)
            #expect(overview.contains("SUBCOMMANDS:") && overview.contains("EXIT CODES:"), "\(overview)")
            #expect(overview == self.sidestat(["--help"]).1)
            let (typoStatus, typo) = self.sidestat(["help", "strat"])
            #expect(typoStatus == 2)
            #expect(typo.contains("did you mean \"start\"?"), "\(typo)")
        }

        @Test("exit codes: 2 for usage and configuration errors, 1 for a Procfile error, as docs/commands.md says")
        func exitCodes() throws {
            #expect(self.sidestat(["--no-such-option"]).0 == 2)
            #expect(self.sidestat(["start", "--no-such-option"]).0 == 2)
            #expect(self.sidestat(["start", "-f"]).0 == 2)
            let directory = TestPaths.temporaryDirectory()
            try "{ port: 'x' }".write(to: directory.appendingPathComponent("bad.js"), atomically: true, encoding: .utf8)
            #expect(self.sidestat(["bad.js"], in: directory).0 == 2)
            #expect(self.sidestat(["check-config", "bad.js"], in: directory).0 == 2)
            #expect(self.sidestat(["start", "--no-statsd"], in: directory).0 == 1)
            #expect(self.sidestat(["check", "-f", "none"], in: directory).0 == 1)
            let table = try String(
                contentsOf: TestPaths.packageRoot.appendingPathComponent("docs/commands.md"), encoding: .utf8)
            for row in ["| 0 |", "| 1 |", "| 2 |", "| 128 + N |"] { #expect(table.contains(row), "\(row)") }
        }

        @Test("a missing Procfile: the message names the directory it looked in and suggests -f")
        func missingProcfile() throws {
            let directory = TestPaths.temporaryDirectory()
            let (status, output) = self.sidestat(["start", "--no-statsd"], in: directory)
            #expect(status == 1)
            let resolved = directory.resolvingSymlinksInPath().path
            #expect(output.contains(" in \(resolved)") || output.contains(" in \(directory.path)"), "\(output)")
            #expect(output.contains("-f"), "\(output)")
            #expect(output.split(separator: "\n").count == 1, "\(output)")
        }

        /// Backquoted words of `text` that name a file: a path with a `/`, a known extension or a Procfile.
        static func fileNames(in text: String) -> [String] {
            let extensions = [".swift", ".js", ".py", ".txt", ".md", ".toml", ".json"]
            return Self.quoted(in: text).filter { word in
                guard let first = word.unicodeScalars.first, CharacterSet.alphanumerics.contains(first),
                    word.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) || "._/-".unicodeScalars.contains($0) })
                else { return false }
                return word.contains("/") || extensions.contains { word.hasSuffix($0) } || word.hasPrefix("Procfile")
            }
        }

        /// Backquoted Procfile lines of `text`: `name: command`.
        static func procfileLines(in text: String) -> [String] {
            Self.quoted(in: text).filter { $0.range(of: #"^[a-z][a-z0-9_-]*: [A-Za-z./$]"#, options: .regularExpression) != nil }
        }

        static func quoted(in text: String) -> [String] {
            text.split(separator: "`", omittingEmptySubsequences: false).enumerated()
                .filter { $0.offset % 2 == 1 }.map { String($0.element) }
        }

        @Test("the examples' READMEs: the files they name exist, and the Procfile lines they quote are the real ones")
        func exampleReadmes() throws {
            let root = TestPaths.packageRoot
            let examples = ["Examples/hello-swift", "Examples/heroku-flask"]
            var realLines: Set<String> = []
            var files: [String] = []  // every file of the examples, relative to Examples/NAME
            for example in examples {
                let folder = root.appendingPathComponent(example)
                let enumerator = try #require(FileManager.default.enumerator(atPath: folder.path))
                for case let path as String in enumerator {
                    if path == ".build" { enumerator.skipDescendants() }
                    files.append(path)
                    guard (path as NSString).lastPathComponent.hasPrefix("Procfile") else { continue }
                    let text = try String(contentsOf: folder.appendingPathComponent(path), encoding: .utf8)
                    realLines.formUnion(text.split(separator: "\n").map(String.init))
                }
            }
            #expect(realLines.contains("web: .build/release/HelloSwift"))
            for document in examples.map({ "\($0)/README.md" }) + ["README.md"] {
                let text = try String(contentsOf: root.appendingPathComponent(document), encoding: .utf8)
                for line in Self.procfileLines(in: text) {
                    #expect(realLines.contains(line), "\(document) quotes a Procfile line no Procfile has: \(line)")
                }
                // The main README names files a user creates (config.js); the examples' name their own.
                for name in document == "README.md" ? [] : Self.fileNames(in: text) {
                    let exists =
                        FileManager.default.fileExists(atPath: root.appendingPathComponent(name).path)
                        || (examples + ["buildpack"]).contains {
                            FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/\(name)").path)
                        }
                        || files.contains { $0 == name || $0.hasSuffix("/" + name) }
                    #expect(exists, "\(document) names a file that does not exist: \(name)")
                }
            }
            // The checks bite: the line the hello-swift README used to quote is not a real one.
            #expect(!realLines.contains("web: bin/sidestat start -f Procfile.chain"))
            #expect(
                Self.procfileLines(in: "`Procfile`: `web: bin/sidestat start -f Procfile.chain`, `graphite: { a: 1 }`")
                    == ["web: bin/sidestat start -f Procfile.chain"])
            #expect(Self.fileNames(in: "see `bin/HelloSwift` and `web.py`") == ["bin/HelloSwift", "web.py"])
        }

        @Test("scripts/install builds in scripts/release's scratch path with its flags, never in swift run's .build")
        func installScratchPath() throws {
            func buildLine(_ script: String) throws -> String {
                let text = try String(
                    contentsOf: TestPaths.packageRoot.appendingPathComponent(script), encoding: .utf8)
                return try #require(text.split(separator: "\n").first { $0.hasPrefix("swift build ") }).description
            }
            let install = try buildLine("scripts/install")
            #expect(install.contains("--scratch-path .build-static"), "\(install)")
            #expect(install == (try buildLine("scripts/release")), "release and install share one build")
            // Installed twice: the second run compiles nothing.
            let prefix = TestPaths.temporaryDirectory()
            let script = TestPaths.packageRoot.appendingPathComponent("scripts/install").path
            let first = runProcess("/bin/bash", [script], environment: ["PREFIX": prefix.path])
            #expect(first.status == 0, "\(first.output)")
            let second = runProcess("/bin/bash", [script], environment: ["PREFIX": prefix.path])
            #expect(second.status == 0, "\(second.output)")
            #expect(!second.output.contains("Compiling") && !second.output.contains("Linking"), "\(second.output)")
            let (version, versionOutput) = runProcess(prefix.appendingPathComponent("bin/sidestat").path, ["--version"])
            #expect(version == 0 && versionOutput.hasPrefix("sidestat "), "\(versionOutput)")
        }
    }
}
