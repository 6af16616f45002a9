import XCTest
@testable import DataParallel

final class ShardMapTests: XCTestCase {
    func testUnevenShardsAndPieces() throws {
        // 3 + 4 + 4 = 11 elements over 3 ranks: 4, 4, 3.
        let m = try ShardMap(parameterCounts: [3, 4, 4], size: 3)
        XCTAssertEqual(m.ranges, [0..<4, 4..<8, 8..<11])
        XCTAssertEqual(m.counts, [4, 4, 3])
        XCTAssertEqual(m.pieces(of: 0), [.init(parameter: 0, elements: 0..<3, shardOffset: 0), .init(parameter: 1, elements: 0..<1, shardOffset: 3)])
        XCTAssertEqual(m.pieces(of: 1), [.init(parameter: 1, elements: 1..<4, shardOffset: 0), .init(parameter: 2, elements: 0..<1, shardOffset: 3)])
        XCTAssertEqual(m.pieces(of: 2), [.init(parameter: 2, elements: 1..<4, shardOffset: 0)])
        XCTAssertEqual(m.counts(within: 3..<9), [1, 4, 1])
        XCTAssertEqual(m.counts(within: 9..<11), [0, 0, 2])
        XCTAssertEqual(m.description, "shards 3 params 3 total 11\nrank 0 0..<4\nrank 1 4..<8\nrank 2 8..<11")
        XCTAssertEqual(try ShardMap(parsing: m.description, parameterCounts: [3, 4, 4]), m)
    }

    func testEdgeCases() throws {
        // Fewer elements than ranks: some shards are empty.
        let m = try ShardMap(parameterCounts: [1, 0, 1], size: 3)
        XCTAssertEqual(m.counts, [1, 1, 0])
        XCTAssertEqual(m.pieces(of: 2), [])
        XCTAssertEqual(m.pieces(of: 1), [.init(parameter: 2, elements: 0..<1, shardOffset: 0)])
        // No parameters.
        let e = try ShardMap(parameterCounts: [], size: 2)
        XCTAssertEqual(e.counts, [0, 0])
        // Pieces of every rank tile every parameter exactly once.
        for size in 1...5 {
            let counts = [7, 0, 1, 13, 2]
            let s = try ShardMap(parameterCounts: counts, size: size)
            var covered = counts.map { [Bool](repeating: false, count: $0) }
            for r in 0..<size {
                for p in s.pieces(of: r) {
                    for e in p.elements { XCTAssertFalse(covered[p.parameter][e]); covered[p.parameter][e] = true }
                }
            }
            XCTAssertTrue(covered.allSatisfy { $0.allSatisfy { $0 } }, "size \(size)")
        }
    }

    func testValidationErrors() {
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(message { _ = try ShardMap(parameterCounts: [4], size: 0) }, "shard map: world size 0; expected >= 1")
        XCTAssertEqual(message { _ = try ShardMap(parameterCounts: [4], ranges: [0..<2, 3..<4]) },
                       "shard map: rank 1 starts at 3; expected 2 (ranges must tile the flat parameters in rank order)")
        XCTAssertEqual(message { _ = try ShardMap(parameterCounts: [4], ranges: [0..<3]) }, "shard map: ranges end at 3; expected the total 4")
        XCTAssertEqual(message { _ = try ShardMap(parsing: "shards 1 params 1 total 4\nrank 0 0..<4x", parameterCounts: [4]) },
                       "shard map text, line 2: expected 'rank 0 LO..<HI', found 'rank 0 0..<4x'")
    }
}
