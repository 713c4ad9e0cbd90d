//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import SidestatRunner
import Testing

struct ProcfileTests {
    @Test("reads name: command lines, skipping comments, blank lines and (with a warning) stray lines")
    func parse() throws {
        let procfile = try Procfile.parse(
            "# the app\nweb: gunicorn web:app --bind 0.0.0.0:$PORT   \n\nworker:python worker.py\r\nnot a process\n"
                + "release: ./migrate\n  # indented comment\nclock: python clock.py",
            path: "Procfile")
        #expect(procfile.processes.map(\.name) == ["web", "worker", "release", "clock"])
        #expect(procfile.processes[0].command == "gunicorn web:app --bind 0.0.0.0:$PORT   ")
        #expect(procfile.processes[1].command == "python worker.py")
        #expect(procfile.runnable.map(\.name) == ["web", "worker", "clock"])
        #expect(procfile.warnings == ["Procfile:5: skipped, not a `name: command` line: not a process"])
    }

    @Test("a repeated process name is an error naming both lines")
    func duplicate() {
        #expect(throws: Procfile.ParseError.self) { try Procfile.parse("web: a\nweb: b\n") }
        do {
            _ = try Procfile.parse("web: a\nworker: c\nweb: b\n", path: "P")
        } catch {
            #expect(error.description == "P:3: process type 'web' is defined twice (first on line 1)")
        }
    }

    @Test(".env: quotes, comments, KEY= sets empty, export lines are set")
    func dotEnv() {
        let values = DotEnv.parse(
            """
            # comment
            PLAIN=value
            SPACED = spaced value  # trailing comment
            DOUBLE="a \\"quoted\\" value\\nnext"
            SINGLE='it has # and $PORT'
            EMPTY=
            export EXPORTED=yes
            1BAD=no
            URL=postgres://u:p@h/db#frag
            """)
        let dictionary = Dictionary(values, uniquingKeysWith: { $1 })
        #expect(dictionary["PLAIN"] == "value")
        #expect(dictionary["SPACED"] == "spaced value")
        #expect(dictionary["DOUBLE"] == "a \"quoted\" value\nnext")
        #expect(dictionary["SINGLE"] == "it has # and $PORT")
        #expect(dictionary["EMPTY"] == "")
        #expect(dictionary["EXPORTED"] == "yes")
        #expect(dictionary["1BAD"] == nil)
        #expect(dictionary["URL"] == "postgres://u:p@h/db#frag")
    }

    @Test("ports: base + 100 × the type's index + the instance number, as honcho assigns them")
    func ports() throws {
        let procfile = try Procfile.parse("web: a\nworker: b\nclock: c\n")
        let planned = planProcesses(procfile.runnable, concurrency: ["web": 2, "worker": 3, "clock": 0], basePort: 5000)
        #expect(planned.map(\.name) == ["web.1", "web.2", "worker.1", "worker.2", "worker.3"])
        #expect(planned.map(\.port) == [5000, 5001, 5100, 5101, 5102])
    }
}
