import ArgumentParser
import Foundation
import ReplayClient
import ReplayService
import ReplayStorage
import Synchronization
import TensorCore

/// `loom-replay bench-worker`: one inserter or sampler process for the `ratio4` row.
struct BenchWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-worker", abstract: "One inserter or sampler client for `bench` (ratio4 row).",
        shouldDisplay: false)

    @Option var port: Int
    @Option var table: String
    @Option var payload: String = "f32x100"
    @Option var role: String
    @Option var seconds: Double = 10
    @Option var workers: Int = 2
    @Option(name: .customLong("response-items")) var responseItems: Int = 0
    @Flag(name: .customLong("connection-per-worker"), inversion: .prefixedNo) var connectionPerWorker = true
    @Flag(name: .customLong("adopt-message-bytes"), inversion: .prefixedNo) var adoptMessageBytes = true
    @Option var transport: String = "http2"

    func run() async throws {
        SystemAllocator.keepLargeBlocksInHeap()
        guard let payload = BenchPayload(name: payload) else { throw ValidationError("--payload \(self.payload): unknown") }
        guard let wire = ReplayClient.ReplayTransport(rawValue: transport) else {
            throw ValidationError("--transport \(transport): expected http2 or framed")
        }
        let client = try ReplayClient(port: port, adoptMessageBytes: adoptMessageBytes, transport: wire)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(seconds)
        switch role {
        case "insert":
            let steps = payload.stepPool(count: 64)
            let writer = try TrajectoryWriter(client: client, chunkLength: 1, maxSequenceLength: 1, maxQueuedMessages: 8)
            var rng = SplitMix(seed: 0xAB)
            var i = 0
            while clock.now < deadline {
                for _ in 0..<payload.itemsPerMessage {
                    try writer.append([steps[i % steps.count]])
                    try writer.createItem(table: table, priority: rng.nextPriority(), numSteps: 1)
                    i += 1
                }
                try await writer.send(timeout: .seconds(30))
            }
            _ = try? await writer.flush(timeout: .seconds(2))
        case "sample":
            // Batches of 256 with 2 calls in flight, like Reverb's ratio4 sampler
            // (TrajectoryDataset with 2 workers, .batch(256)); responses as in sample_b256.
            let sampler = try ReplaySampler(client: client, table: table, batchSize: 256,
                                            flexibleBatchSize: responseItems > 0 ? responseItems : payload.responseItems,
                                            timeout: .seconds(30))
            try await sampler.stream(workers: workers, connectionPerWorker: connectionPerWorker) { _ in clock.now < deadline }
        default:
            throw ValidationError("--role \(role): expected insert or sample")
        }
        await client.close()
    }
}
