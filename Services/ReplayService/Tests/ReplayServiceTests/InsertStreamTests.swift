import Foundation
import GRPCCore
import ReplayClient
import ReplayService
import ReplayServiceProto
import ReplayStorage
import TensorCore
import XCTest

/// The InsertStream RPC: per-message confirmations by key, the writer's `waitForItems`
/// (Reverb's flush: wait for the items, keep the stream open), and its errors.
final class InsertStreamTests: XCTestCase {
    /// Items sent in three messages: `waitForItems` returns every key in creation order and
    /// they are in the table while the stream is still open; later items go on the same
    /// stream and `flush` counts all of them.
    func testWaitForItemsConfirmsKeysWithStreamOpen() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t", maxSize: 1000)])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client, chunkLength: 2, maxSequenceLength: 4)
        var keys: [UInt64] = []
        for message in 0..<3 {
            for s in 0..<5 {
                try writer.append([try Tensor([Float(message * 10 + s)], shape: [1])])
                keys.append(try writer.createItem(table: "t", priority: 1, numSteps: Swift.min(s + 1, 3)))
            }
            try await writer.send()
        }
        let confirmed = try await writer.waitForItems(waitTimeout: .seconds(10))
        XCTAssertEqual(confirmed, keys)
        XCTAssertEqual(replay.info()[0].size, 15)
        // Same stream: two more items, then flush counts all 17.
        for s in 0..<2 {
            try writer.append([try Tensor([Float(100 + s)], shape: [1])])
            keys.append(try writer.createItem(table: "t", priority: 1, numSteps: 1))
        }
        let again = try await writer.waitForItems(leaving: 0)
        XCTAssertEqual(again, keys)
        let inserted = try await writer.flush()
        XCTAssertEqual(inserted, 17)
        XCTAssertEqual(replay.info()[0].size, 17)
        await client.close()
        try await service.stop()
    }

    /// A message whose last item names an unknown table fails the stream with NOT_FOUND
    /// after confirming the items before it: the confirmed keys are exactly the items in
    /// the table.
    func testErrorKeepsEarlierConfirmations() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let stream = client.openInsertStream()
        try await stream.send(try message(keys: [1, 2, 3], table: "t", firstChunk: 100))
        let first = try await stream.waitForConfirmations(timeout: .seconds(10))
        XCTAssertEqual(first, [1, 2, 3])
        try await stream.send(try message(keys: [4, 5], table: "t", firstChunk: 200, lastTable: "nope"))
        let message = await assertRPCError(.notFound) { try await stream.waitForConfirmations(timeout: .seconds(10)) }
        XCTAssertTrue(message.contains("'nope'"), message)
        XCTAssertEqual(stream.confirmedKeys, [1, 2, 3, 4])
        XCTAssertTrue(stream.hasEnded)
        XCTAssertEqual(replay.info()[0].size, 4)
        await assertRPCError(.notFound) { try await stream.send(try self.message(keys: [5], table: "t", firstChunk: 300)) }
        await client.close()
        try await service.stop()
    }

    /// Items blocked by the rate limiter (a full queue table): `waitForItems` with a short
    /// wait throws DEADLINE_EXCEEDED and leaves them in flight on the open stream; once a
    /// sample frees room, the next `waitForItems` confirms them.
    func testWaitTimeoutLeavesItemsInFlight() async throws {
        let replay = try ReplayServer(tables: [try TableConfig.queue(name: "q", maxSize: 2)])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client)
        var keys: [UInt64] = []
        for s in 0..<3 {
            try writer.append([try Tensor([Float(s)], shape: [1])])
            keys.append(try writer.createItem(table: "q", priority: 1, numSteps: 1))
        }
        await assertRPCError(.deadlineExceeded) { try await writer.waitForItems(waitTimeout: .milliseconds(200)) }
        XCTAssertEqual(replay.info()[0].size, 2)
        let first = try await client.sample(table: "q", count: 1, timeout: .seconds(5))
        XCTAssertEqual(first.map(\.info.key), [keys[0]])
        let confirmed = try await writer.waitForItems(waitTimeout: .seconds(10))
        XCTAssertEqual(confirmed, keys)
        let inserted = try await writer.flush()
        XCTAssertEqual(inserted, 3)
        await client.close()
        try await service.stop()
    }

    /// An open, idle InsertStream does not hold up the host's shutdown: the call ends with
    /// CANCELLED and the confirmed items stay confirmed.
    func testShutdownEndsIdleInsertStream() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let stream = client.openInsertStream()
        try await stream.send(try message(keys: [7], table: "t", firstChunk: 1))
        let confirmed = try await stream.waitForConfirmations(timeout: .seconds(10))
        XCTAssertEqual(confirmed, [7])
        let start = ContinuousClock.now
        try await service.stop()
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(10))
        await assertRPCError(.cancelled) { _ = try await stream.finish() }
        XCTAssertEqual(stream.confirmedKeys, [7])
        await client.close()
    }

    /// An InsertRequest with one-step items keyed `keys`, each over its own chunk, for
    /// `table` (the last one for `lastTable` when given).
    private func message(keys: [UInt64], table: String, firstChunk: UInt64, lastTable: String? = nil) throws -> Loom_Replay_InsertRequest {
        var request = Loom_Replay_InsertRequest()
        for (i, key) in keys.enumerated() {
            var chunk = Loom_Replay_ChunkData()
            chunk.key = firstChunk + UInt64(i)
            chunk.columns = [Loom_Replay_TensorData(try Tensor([Float(key)], shape: [1, 1]))]
            request.chunks.append(chunk)
            var item = Loom_Replay_ItemData()
            item.key = key
            item.table = i == keys.count - 1 ? lastTable ?? table : table
            item.priority = 1
            item.chunkKeys = [chunk.key]
            item.length = 1
            request.items.append(item)
        }
        return request
    }
}
