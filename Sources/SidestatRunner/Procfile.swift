//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A Procfile: `name: command` lines, as honcho and foreman read them.
///
/// A line matches `^[A-Za-z0-9_-]+:\s*(.+)$`; comments and blank lines are skipped silently, and other stray lines
/// are skipped with a warning naming the line (honcho and foreman skip them without a word). A repeated process
/// name is an error naming both lines, as in honcho. `release:` is kept but not run by `start`.
public struct Procfile: Sendable, Equatable {
    public struct Process: Sendable, Equatable {
        public var name: String
        public var command: String
        /// 1-based line number in the file.
        public var line: Int
    }

    public var processes: [Process]
    public var warnings: [String]

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The types `start` runs by default (everything but `release`).
    public var runnable: [Process] { self.processes.filter { $0.name != "release" } }

    public static func parse(_ text: String, path: String = "Procfile") throws(ParseError) -> Procfile {
        var processes: [Process] = []
        var warnings: [String] = []
        var lineNumber = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let (name, command) = Self.match(line) else {
                warnings.append("\(path):\(lineNumber): skipped, not a `name: command` line: \(line)")
                continue
            }
            if let earlier = processes.first(where: { $0.name == name }) {
                throw ParseError(
                    description:
                        "\(path):\(lineNumber): process type '\(name)' is defined twice (first on line \(earlier.line))")
            }
            processes.append(Process(name: name, command: command, line: lineNumber))
        }
        return Procfile(processes: processes, warnings: warnings)
    }

    /// `^([A-Za-z0-9_-]+):\s*(.+)$`
    static func match(_ line: Substring) -> (String, String)? {
        guard let colon = line.firstIndex(of: ":") else { return nil }
        let name = line[..<colon]
        guard !name.isEmpty,
            name.unicodeScalars.allSatisfy({
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_"
                    || $0 == "-"
            })
        else { return nil }
        let command = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
        guard !command.isEmpty else { return nil }
        return (String(name), String(command))
    }
}

/// `.env` files: `KEY=VALUE` lines with single or double quotes, `#` comments, `KEY=` (set to empty, as foreman
/// does) and `export KEY=VALUE` (which honcho and foreman ignore; Sidestat sets it).
public enum DotEnv {
    public static func parse(_ text: String) -> [(String, String)] {
        var result: [(String, String)] = []
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            line = line.drop { $0 == " " || $0 == "\t" }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") || line.hasPrefix("export\t") {
                line = line.dropFirst("export".count).drop { $0 == " " || $0 == "\t" }
            }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingSpaces()
            guard let first = key.unicodeScalars.first, first == "_" || first.properties.isAlphabetic,
                key.unicodeScalars.allSatisfy({ $0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0) })
            else { continue }
            let value = Self.value(line[line.index(after: equals)...].drop { $0 == " " || $0 == "\t" })
            result.append((String(key), value))
        }
        return result
    }

    /// A value as honcho's shell-like reading gives it: quoted parts lose their quotes (`'...'` literally, `"..."`
    /// with `\n`, `\t`, `\r`, `\"` and `\\` escapes), a backslash outside quotes takes the next character as it
    /// is (`\"tiger\"` is `"tiger"`), and an inline comment (` #`) ends the value. Unlike honcho, unquoted spaces
    /// inside the value are kept, as foreman keeps them; trailing ones go.
    static func value(_ raw: Substring) -> String {
        var result = ""
        var quote: Character? = nil
        var keep = 0  // characters that trailing-space trimming must not remove (up to the last quote)
        var previous: Character = " "
        var index = raw.startIndex
        while index < raw.endIndex {
            let character = raw[index]
            let next = raw.index(after: index)
            if let open = quote {
                if character == open {
                    quote = nil
                    keep = result.count
                } else if open == "\"", character == "\\", next < raw.endIndex {
                    index = next
                    switch raw[index] {
                    case "n": result.append("\n")
                    case "t": result.append("\t")
                    case "r": result.append("\r")
                    default: result.append(raw[index])
                    }
                } else {
                    result.append(character)
                }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if character == "\\", next < raw.endIndex {
                index = next
                result.append(raw[index])
                keep = result.count
            } else if character == "#", previous == " " || previous == "\t", index != raw.startIndex {
                break
            } else {
                result.append(character)
            }
            previous = raw[index]
            index = raw.index(after: index)
        }
        if quote != nil { return result }  // an unterminated quote takes the rest of the line
        while result.count > keep, let last = result.last, last == " " || last == "\t" { result.removeLast() }
        return result
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var text = self
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        return text
    }
}

/// One process to run: `web.1` with its command and environment.
public struct PlannedProcess: Sendable, Equatable {
    public var name: String
    public var command: String
    public var port: Int
}

/// honcho's expansion: each selected type gets `concurrency` instances; instance `i` (from 0) of the type at index
/// `t` gets `PORT = base + 100 × t + i`.
public func planProcesses(
    _ types: [Procfile.Process], concurrency: [String: Int], basePort: Int
) -> [PlannedProcess] {
    var planned: [PlannedProcess] = []
    for (typeIndex, type) in types.enumerated() {
        for instance in 0..<(concurrency[type.name] ?? 1) {
            planned.append(
                PlannedProcess(
                    name: "\(type.name).\(instance + 1)", command: type.command,
                    port: basePort + 100 * typeIndex + instance))
        }
    }
    return planned
}
