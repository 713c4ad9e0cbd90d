//===----------------------------------------------------------------------===//
// Sidestat: a statsd-compatible metrics sidecar.
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import SidestatSupport
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A small command-line parser: subcommands, `--option VALUE` / `--option=VALUE` / `-o VALUE` / `-oVALUE`, flags,
/// positional arguments, `--` and `--help`.
///
/// Sidestat does not use swift-argument-parser: on Linux it links FoundationEssentials, which costs about 3 MiB of
/// resident memory in a daemon whose idle budget is 12 MiB.
struct CommandSpec: Sendable {
    struct Option: Sendable {
        var names: [String]  // "--config", "-c"
        var valueName: String?  // nil for a flag
        var help: String
    }

    var name: String
    var usage: String
    var abstract: String
    var discussion: String = ""
    var options: [Option] = []
    var arguments: [(name: String, help: String)] = []

    var helpText: String {
        var text = "OVERVIEW: \(self.abstract)\n\n"
        if !self.discussion.isEmpty { text += self.discussion + "\n\n" }
        text += "USAGE: \(self.usage)\n"
        if !self.arguments.isEmpty {
            text += "\nARGUMENTS:\n"
            for argument in self.arguments { text += Self.row(argument.name, argument.help) }
        }
        text += "\nOPTIONS:\n"
        for option in self.options {
            let names = option.names.joined(separator: ", ") + (option.valueName.map { " <\($0)>" } ?? "")
            text += Self.row(names, option.help)
        }
        text += Self.row("-h, --help", "Show help information.")
        return text
    }

    static func row(_ left: String, _ right: String) -> String {
        let padded = left.count < 26 ? left + String(repeating: " ", count: 26 - left.count) : left + "\n" + String(repeating: " ", count: 28)
        return "  \(padded)\(right)\n"
    }
}

/// What the parser found.
struct ParsedCommand {
    var values: [String: [String]] = [:]  // by the option's first name
    var flags: Set<String> = []
    var positional: [String] = []
    /// Everything after `--`.
    var rest: [String] = []
    var sawSeparator = false

    func value(_ name: String) -> String? { self.values[name]?.last }
    func has(_ flag: String) -> Bool { self.flags.contains(flag) }
}

struct UsageError: Error, CustomStringConvertible {
    var description: String
}

/// Parses `arguments` (without the command name) against `spec`. Returns nil when help was asked for.
func parse(_ arguments: [String], _ spec: CommandSpec) throws -> ParsedCommand? {
    var result = ParsedCommand()
    var index = 0
    func option(named name: String) -> CommandSpec.Option? {
        spec.options.first { $0.names.contains(name) }
    }
    while index < arguments.count {
        let argument = arguments[index]
        index += 1
        if argument == "--" {
            result.sawSeparator = true
            result.rest = Array(arguments[index...])
            break
        }
        if argument == "-h" || argument == "--help" { return nil }
        if argument.hasPrefix("-") && argument.count > 1 {
            var name = argument
            var inlineValue: String? = nil
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            } else if !argument.hasPrefix("--"), argument.count > 2, option(named: argument) == nil {
                // A value attached to a short option, as honcho (argparse) takes it: `-cweb=2`, `-fProcfile`.
                let short = String(argument.prefix(2))
                if option(named: short)?.valueName != nil {
                    name = short
                    inlineValue = String(argument.dropFirst(2))
                }
            }
            guard let found = option(named: name) else {
                throw UsageError(description: "unknown option '\(name)'")
            }
            let key = found.names[0]
            if found.valueName != nil {
                if let inlineValue {
                    result.values[key, default: []].append(inlineValue)
                } else {
                    guard index < arguments.count else {
                        throw UsageError(description: "missing value for '\(name)'")
                    }
                    result.values[key, default: []].append(arguments[index])
                    index += 1
                }
            } else {
                guard inlineValue == nil else { throw UsageError(description: "'\(name)' takes no value") }
                result.flags.insert(key)
            }
            continue
        }
        result.positional.append(argument)
    }
    return result
}
