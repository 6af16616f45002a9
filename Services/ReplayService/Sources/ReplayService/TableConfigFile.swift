import Foundation
import ReplayStorage
import Yams

/// Reads replay table configs from a JSON or YAML file (chosen by extension: `.json`,
/// `.yaml`, `.yml`). Both formats have one schema: either a list of `TableConfig` or a
/// mapping with a `tables` list, e.g.
///
/// ```yaml
/// tables:
///   - name: replay
///     sampler: {kind: prioritized, priorityExponent: 0.6}
///     remover: {kind: fifo}
///     maxSize: 100000
///     rateLimiter: {samplesPerInsert: 1, minSizeToSample: 1, minDiff: -1.0e308, maxDiff: 1.0e308}
/// ```
///
/// Every config is validated (`TableConfig.validate`). Errors are `ConfigFileError`s whose
/// message names the file, the key (e.g. `tables[1].rateLimiter.minSizeToSample`) and
/// what was expected.
public enum TableConfigFile {
    /// The file formats understood.
    public enum Format: String, Sendable {
        case json, yaml
    }

    /// The format for `path`'s extension; throws for any other extension.
    public static func format(of path: String) throws(ConfigFileError) -> Format {
        switch (path as NSString).pathExtension.lowercased() {
        case "json": return .json
        case "yaml", "yml": return .yaml
        case let ext:
            throw ConfigFileError("\(path): extension '\(ext)' not understood; expected .json, .yaml or .yml")
        }
    }

    /// Reads and validates the table configs in `path`.
    public static func load(path: String) throws(ConfigFileError) -> [TableConfig] {
        let format = try format(of: path)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigFileError("\(path): cannot read the file")
        }
        return try parse(data, format: format, path: path)
    }

    /// Parses and validates table configs from `data` in `format`; `path` names the source
    /// in errors.
    public static func parse(_ data: Data, format: Format, path: String) throws(ConfigFileError) -> [TableConfig] {
        let file: ConfigFileBody
        do {
            switch format {
            case .json:
                file = try JSONDecoder().decode(ConfigFileBody.self, from: data)
            case .yaml:
                guard let text = String(data: data, encoding: .utf8) else {
                    throw ConfigFileError("\(path): not UTF-8 text; expected a YAML document")
                }
                file = try YAMLDecoder().decode(ConfigFileBody.self, from: text)
            }
        } catch let error as ConfigFileError {
            throw error
        } catch let error as LocatedConfigError {
            throw ConfigFileError("\(path): \(error.path): \(error.message)")
        } catch let error as DecodingError {
            if let located = Self.located(in: error) {
                throw ConfigFileError("\(path): \(located.path): \(located.message)")
            }
            throw ConfigFileError("\(path): \(describe(error, format: format))")
        } catch let error as YamlError {
            throw ConfigFileError("\(path): not valid YAML: \(error)")
        } catch {
            throw ConfigFileError("\(path): \(error)")
        }
        guard !file.tables.isEmpty else {
            throw ConfigFileError("\(path): \(file.listPath): expected at least one table, found none")
        }
        var names = Set<String>()
        for (i, table) in file.tables.enumerated() {
            let at = "\(file.listPath)[\(i)] ('\(table.name)')"
            do throws(ReplayError) {
                try table.validate()
            } catch {
                // The table's own message may start with "table '<name>': "; the name is in `at`.
                let prefix = "table '\(table.name)': "
                let message = error.message.hasPrefix(prefix) ? String(error.message.dropFirst(prefix.count)) : error.message
                throw ConfigFileError("\(path): \(at): \(message)")
            }
            guard names.insert(table.name).inserted else {
                throw ConfigFileError("\(path): \(at).name: table name '\(table.name)' appears twice; expected unique names")
            }
        }
        return file.tables
    }

    /// A located table error that a decoder wrapped (Yams wraps errors thrown by `init(from:)`).
    static func located(in error: any Error) -> LocatedConfigError? {
        if let l = error as? LocatedConfigError { return l }
        if case .dataCorrupted(let ctx) = error as? DecodingError, let inner = ctx.underlyingError {
            return located(in: inner)
        }
        return nil
    }

    /// A decoding error as "key: what was expected".
    static func describe(_ error: DecodingError, format: Format) -> String {
        func keyPath(_ path: [any CodingKey]) -> String {
            var out = ""
            for key in path {
                if let i = key.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + key.stringValue }
            }
            return out.isEmpty ? "top level" : out
        }
        switch error {
        case .keyNotFound(let key, let ctx):
            let at = keyPath(ctx.codingPath + [key])
            return "\(at): missing; expected \(expectation(for: key.stringValue))"
        case .typeMismatch(let type, let ctx):
            return "\(keyPath(ctx.codingPath)): expected \(typeName(type)) (\(ctx.debugDescription))"
        case .valueNotFound(let type, let ctx):
            return "\(keyPath(ctx.codingPath)): expected \(typeName(type)), found null"
        case .dataCorrupted(let ctx):
            let underlying = ctx.underlyingError.map { ": \($0)" } ?? ""
            return "\(keyPath(ctx.codingPath)): \(ctx.debugDescription)\(underlying); expected a \(format == .json ? "JSON" : "YAML") list of tables or a mapping with a 'tables' list"
        @unknown default:
            return "\(error)"
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is UInt64.Type: return "an integer"
        case is Double.Type: return "a number"
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "a list" }
            if name.hasPrefix("Dictionary") || name.contains("KeyedDecodingContainer") { return "a mapping" }
            return name
        }
    }

    /// What a table config key holds, for "missing key" errors.
    static func expectation(for key: String) -> String {
        switch key {
        case "name": return "the table name (a string)"
        case "sampler", "remover": return "a selector {kind: fifo|lifo|uniform|prioritized|maxHeap|minHeap, priorityExponent: <number, prioritized only>}"
        case "maxSize": return "the maximum number of items (an integer >= 1)"
        case "rateLimiter": return "{samplesPerInsert: <number > 0>, minSizeToSample: <integer >= 1>, minDiff: <number>, maxDiff: <number>}"
        case "samplesPerInsert": return "a number > 0"
        case "minSizeToSample": return "an integer >= 1"
        case "minDiff", "maxDiff": return "a number"
        case "kind": return "fifo, lifo, uniform, prioritized, maxHeap or minHeap"
        case "tables": return "a list of tables"
        default: return "a value"
        }
    }
}

/// A config file that cannot be used; the message names the file, the key and what was
/// expected.
public struct ConfigFileError: Error, CustomStringConvertible, Equatable {
    /// What went wrong.
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An error inside one table, located by key path (for errors that `TableConfig`'s own
/// decoder throws without a coding path, e.g. an unknown selector kind).
struct LocatedConfigError: Error {
    let path: String
    let message: String
}

/// The file's top level: a list of tables or `{tables: [...]}`.
private struct ConfigFileBody: Decodable {
    var tables: [TableConfig]
    var listPath: String

    private enum Keys: String, CodingKey { case tables }

    init(from decoder: any Decoder) throws {
        if let keyed = try? decoder.container(keyedBy: Keys.self) {
            guard keyed.contains(.tables) else {
                throw DecodingError.keyNotFound(Keys.tables, .init(codingPath: [], debugDescription: "no 'tables' key"))
            }
            var list = try keyed.nestedUnkeyedContainer(forKey: .tables)
            tables = try Self.decodeTables(&list, prefix: "tables")
            listPath = "tables"
        } else {
            var list = try decoder.unkeyedContainer()
            tables = try Self.decodeTables(&list, prefix: "")
            listPath = "top-level list"
        }
    }

    private static func decodeTables(_ list: inout any UnkeyedDecodingContainer, prefix: String) throws -> [TableConfig] {
        var out: [TableConfig] = []
        while !list.isAtEnd {
            let index = list.currentIndex
            do {
                // Decode the element through a probe first so selector errors name their key.
                let probe = try list.decode(TableProbe.self)
                out.append(probe.config)
            } catch let error as TableProbe.Failure {
                throw LocatedConfigError(path: "\(prefix)[\(index)]\(error.key.isEmpty ? "" : ".")\(error.key)", message: error.message)
            }
        }
        return out
    }
}

/// Decodes one `TableConfig`, turning the `ReplayError`s its decoder throws for selectors
/// into errors that name the key (`sampler` or `remover`).
private struct TableProbe: Decodable {
    let config: TableConfig

    struct Failure: Error {
        let key: String
        let message: String
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        do {
            config = try TableConfig(from: decoder)
        } catch let error as ReplayError {
            let keyed = try decoder.container(keyedBy: Key.self)
            for key in ["sampler", "remover"] {
                do {
                    _ = try keyed.decodeIfPresent(SelectorConfig.self, forKey: Key(stringValue: key))
                } catch let inner as ReplayError {
                    throw Failure(key: key, message: inner.message)
                } catch {}
            }
            throw Failure(key: "", message: error.message)
        }
    }
}
