import XCTest
@testable import ReplayStorage
import TensorCore

final class SignatureTests: XCTestCase {
    let signature = [ColumnSpec(name: "obs", dtype: .float32, shape: [4]),
                     ColumnSpec(name: "action", dtype: .int32, shape: []),
                     ColumnSpec(name: "frame", dtype: .uint8, shape: [-1, 2])]

    func table() throws -> ReplayTable {
        try ReplayTable(config: TableConfig(name: "traj", sampler: .uniform, remover: .fifo, maxSize: 10,
                                            rateLimiter: .minSize(1), signature: signature))
    }

    func chunk(obs: Tensor? = nil, action: Tensor? = nil, frame: Tensor? = nil, extra: Bool = false) throws -> Chunk {
        var cols = [try obs ?? Tensor([Float](repeating: 1, count: 8), shape: [2, 4]),
                    action ?? Tensor([Int32(0), 1]),
                    try frame ?? Tensor([UInt8](repeating: 3, count: 12), shape: [2, 3, 2])]
        if extra { cols.append(Tensor([Float(0), 0])) }
        return try Chunk(key: 9, columns: cols)
    }

    func testMatchingDataIsAcceptedWithWildcards() throws {
        let t = try table()
        try t.insertBounded(ReplayItem(key: 1, table: "traj", priority: 1, chunks: [try chunk()]))
        let other = try chunk(frame: Tensor([UInt8](repeating: 3, count: 20), shape: [2, 5, 2]))
        try t.insertBounded(ReplayItem(key: 2, table: "traj", priority: 1, chunks: [other]))
        XCTAssertEqual(t.size, 2)
    }

    func testMismatchesNameColumnExpectedAndFound() throws {
        let t = try table()
        assertReplayError(.signatureMismatch, "table 'traj': column 'obs': expected dtype float32, found float64 (chunk 9)") {
            try t.insertBounded(ReplayItem(key: 1, table: "traj", priority: 1,
                                    chunks: [try! chunk(obs: Tensor([Double](repeating: 1, count: 8), shape: [2, 4]))]))
        }
        assertReplayError(.signatureMismatch, "table 'traj': column 'obs': expected step shape [4], found [5] (chunk 9 of shape [2, 5])") {
            try t.insertBounded(ReplayItem(key: 1, table: "traj", priority: 1,
                                    chunks: [try! chunk(obs: Tensor([Float](repeating: 1, count: 10), shape: [2, 5]))]))
        }
        assertReplayError(.signatureMismatch, "table 'traj': column 'action': expected step shape [], found [1] (chunk 9 of shape [2, 1])") {
            try t.insertBounded(ReplayItem(key: 1, table: "traj", priority: 1,
                                    chunks: [try! chunk(action: Tensor([Int32(0), 1], shape: [2, 1]))]))
        }
        assertReplayError(.signatureMismatch, "table 'traj': column 'frame': expected step shape [-1, 2], found [3, 3] (chunk 9 of shape [2, 3, 3])") {
            try t.insertBounded(ReplayItem(key: 1, table: "traj", priority: 1,
                                    chunks: [try! chunk(frame: Tensor([UInt8](repeating: 0, count: 18), shape: [2, 3, 3]))]))
        }
        assertReplayError(.signatureMismatch, "table 'traj': chunk 9 has 4 columns, expected 3 (obs, action, frame)") {
            try t.insertBounded(ReplayItem(key: 1, table: "traj", priority: 1, chunks: [try! chunk(extra: true)]))
        }
        XCTAssertEqual(t.size, 0)
        XCTAssertEqual(t.counters, RateLimiterCounters())
    }

    func testInvalidSignaturesAreRefused() {
        assertReplayError(.invalidArgument, "table 'x': signature names column 'a' twice") {
            try ReplayTable(config: TableConfig(name: "x", sampler: .fifo, remover: .fifo, maxSize: 1, rateLimiter: .minSize(1),
                                                signature: [ColumnSpec(name: "a", dtype: .bool, shape: []),
                                                            ColumnSpec(name: "a", dtype: .bool, shape: [])]))
        }
        assertReplayError(.invalidArgument, "table 'x': column 'a' has extent -3 in shape [-3], expected >= 0 or -1 (any)") {
            try ReplayTable(config: TableConfig(name: "x", sampler: .fifo, remover: .fifo, maxSize: 1, rateLimiter: .minSize(1),
                                                signature: [ColumnSpec(name: "a", dtype: .bool, shape: [-3])]))
        }
    }

    func testTableConfigDecodesFromJSONWithDefaults() throws {
        let json = """
        {"name": "replay", "sampler": {"kind": "prioritized", "priorityExponent": 0.6},
         "remover": {"kind": "fifo"}, "maxSize": 1000,
         "rateLimiter": {"samplesPerInsert": 4, "minSizeToSample": 100, "minDiff": 300, "maxDiff": 500},
         "signature": [{"name": "obs", "dtype": "float32", "shape": [4]}]}
        """
        let c = try JSONDecoder().decode(TableConfig.self, from: Data(json.utf8))
        XCTAssertEqual(c, TableConfig(name: "replay", sampler: .prioritized(priorityExponent: 0.6), remover: .fifo, maxSize: 1000,
                                      maxTimesSampled: 0,
                                      rateLimiter: try RateLimiterConfig(samplesPerInsert: 4, minSizeToSample: 100, minDiff: 300, maxDiff: 500),
                                      signature: [ColumnSpec(name: "obs", dtype: .float32, shape: [4])], seed: 0))
        XCTAssertEqual(try JSONDecoder().decode(TableConfig.self, from: JSONEncoder().encode(c)), c)
        let bad = json.replacingOccurrences(of: "\"fifo\"", with: "\"random\"")
        XCTAssertThrowsError(try JSONDecoder().decode(TableConfig.self, from: Data(bad.utf8))) { e in
            XCTAssertEqual((e as? ReplayError)?.message,
                           "unknown selector kind 'random' (expected fifo, lifo, uniform, prioritized, maxHeap or minHeap)")
        }
    }
}
