import XCTest
@testable import Collectives

/// `WireStats` counts what the ring really sends: 2(p-1)/p of the buffer per rank, half of
/// it with a Float16 wire. (MPI's own collectives are not counted; the in-process
/// backend's "native" ops are Loom code over the same transport and are.)
final class WireStatsTests: XCTestCase {
    func run(p: Int, n: Int, options: CollectiveOptions) throws -> Int {
        WireStats.reset()
        _ = try InProcessWorld.run(size: p) { g in
            var x = [Float](repeating: 1, count: n)
            try x.withUnsafeMutableBufferPointer { try g.allReduce($0, op: .sum, options: options) }
            return x[0]
        }
        return WireStats.bytesSent
    }

    func testRingBytesFollowTheFormula() throws {
        for (p, n) in [(2, 1000), (3, 999), (4, 4096)] {
            // Every rank sends (p-1) segments in the reduce-scatter and (p-1) in the all-gather:
            // 2(p-1) * n/p elements per rank, 2(p-1) * n elements over all ranks.
            XCTAssertEqual(try run(p: p, n: n, options: .ring), 2 * (p - 1) * n * 4, "p \(p), n \(n)")
            XCTAssertEqual(try run(p: p, n: n, options: CollectiveOptions(algorithm: .ring, compression: .float16)),
                           2 * (p - 1) * n * 2, "fp16 wire, p \(p), n \(n)")
        }
    }
}
