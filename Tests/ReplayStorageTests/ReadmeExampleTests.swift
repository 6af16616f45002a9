import XCTest
import ReplayStorage
import TensorCore

/// The README's replay example, verbatim, so the documentation stays true.
final class ReadmeExampleTests: XCTestCase {
    func testReadmeExample() throws {
        let server = try ReplayServer(tables: [
            TableConfig(name: "replay", sampler: .prioritized(priorityExponent: 0.8), remover: .fifo, maxSize: 100_000,
                        rateLimiter: try .sampleToInsertRatio(samplesPerInsert: 4, minSizeToSample: 1, errorBuffer: 100))])
        let steps = try Chunk(key: 1, columns: [Tensor.zeros([10, 100])])          // 10 steps of float32[100]
        try server.insert(ReplayItem(key: 1, table: "replay", priority: 1.0, chunks: [steps]), timeout: .seconds(1))
        let batch = try server.sample(table: "replay", count: 32, timeout: .seconds(1))   // items with SampleInfo
        XCTAssertFalse(batch.isEmpty)
        XCTAssertEqual(batch[0].info.key, 1)
        XCTAssertEqual(batch[0].info.probability, 1.0)
    }
}
