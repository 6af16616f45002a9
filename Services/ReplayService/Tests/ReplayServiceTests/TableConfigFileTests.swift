import Foundation
import ReplayService
import ReplayStorage
import XCTest

/// The fixtures folder next to this file.
func fixture(_ name: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").appendingPathComponent(name).path
}

final class TableConfigFileTests: XCTestCase {
    /// The YAML fixture and the JSON fixture describe the same tables, field for field.
    func testYAMLEqualsJSON() throws {
        let json = try TableConfigFile.load(path: fixture("tables.json"))
        let yaml = try TableConfigFile.load(path: fixture("tables.yaml"))
        XCTAssertEqual(yaml, json)
        XCTAssertEqual(json.map(\.name), ["replay", "queue"])
        XCTAssertEqual(json[0].sampler, .prioritized(priorityExponent: 0.6))
        XCTAssertEqual(json[0].rateLimiter.samplesPerInsert, 4)
        XCTAssertEqual(json[0].rateLimiter.minDiff, -360)
        XCTAssertEqual(json[0].signature?.first?.shape, [3])
        XCTAssertEqual(json[0].seed, 7)
        XCTAssertEqual(json[1].maxTimesSampled, 1)
        // A top-level list works too.
        let list = try TableConfigFile.parse(Data("""
            - name: t
              sampler: {kind: uniform}
              remover: {kind: fifo}
              maxSize: 5
              rateLimiter: {samplesPerInsert: 1, minSizeToSample: 1, minDiff: -1.0e308, maxDiff: 1.0e308}
            """.utf8), format: .yaml, path: "list.yaml")
        XCTAssertEqual(list.map(\.maxSize), [5])
    }

    func error(_ text: String, _ format: TableConfigFile.Format = .yaml, path: String = "bad.yaml") -> String {
        do {
            _ = try TableConfigFile.parse(Data(text.utf8), format: format, path: path)
            XCTFail("expected an error for:\n\(text)")
        } catch {
            return error.message
        }
        return ""
    }

    static let good = "sampler: {kind: uniform}\n    remover: {kind: fifo}\n    rateLimiter: {samplesPerInsert: 1, minSizeToSample: 1, minDiff: -1.0e308, maxDiff: 1.0e308}"

    /// Errors name the file, the key and the expected value.
    func testErrorsNameFileKeyAndExpectation() {
        var m = error("tables:\n  - name: t\n    \(Self.good)\n")
        XCTAssertTrue(m.hasPrefix("bad.yaml: tables[0].maxSize: missing; expected the maximum number of items"), m)

        m = error("tables:\n  - name: t\n    maxSize: lots\n    \(Self.good)\n")
        XCTAssertTrue(m.hasPrefix("bad.yaml: tables[0].maxSize: expected an integer"), m)

        m = error("tables:\n  - name: t\n    maxSize: 3\n    sampler: {kind: random}\n    remover: {kind: fifo}\n    rateLimiter: {samplesPerInsert: 1, minSizeToSample: 1, minDiff: 0, maxDiff: 1}\n")
        XCTAssertTrue(m.hasPrefix("bad.yaml: tables[0].sampler: unknown selector kind 'random' (expected fifo"), m)

        m = error(#"{"tables": [{"name": "a", "maxSize": 3, "sampler": {"kind": "fifo"}, "remover": {"kind": "fifo"}, "rateLimiter": {"samplesPerInsert": 1, "minSizeToSample": 0, "minDiff": 0, "maxDiff": 1}}]}"#,
                  .json, path: "bad.json")
        XCTAssertTrue(m.hasPrefix("bad.json: tables[0] ('a'): rate limiter: minSizeToSample 0 must be >= 1"), m)

        m = error("tables: []\n")
        XCTAssertEqual(m, "bad.yaml: tables: expected at least one table, found none")

        m = error("tables:\n  - name: t\n    maxSize: 3\n    \(Self.good)\n  - name: t\n    maxSize: 4\n    \(Self.good)\n")
        XCTAssertTrue(m.hasPrefix("bad.yaml: tables[1] ('t').name: table name 't' appears twice"), m)

        m = error("tables: [unclosed\n")
        XCTAssertTrue(m.hasPrefix("bad.yaml: "), m)

        XCTAssertThrowsError(try TableConfigFile.load(path: "/nonexistent/x.toml")) { e in
            XCTAssertEqual((e as? ConfigFileError)?.message, "/nonexistent/x.toml: extension 'toml' not understood; expected .json, .yaml or .yml")
        }
        XCTAssertThrowsError(try TableConfigFile.load(path: "/nonexistent/x.yml")) { e in
            XCTAssertEqual((e as? ConfigFileError)?.message, "/nonexistent/x.yml: cannot read the file")
        }
    }
}
