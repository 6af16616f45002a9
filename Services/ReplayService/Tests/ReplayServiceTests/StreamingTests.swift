import Foundation
import GRPCCore
@testable import ReplayClient
@testable import ReplayService
import ReplayStorage
import TensorCore
import XCTest

/// The streaming writer (`send` + `flush`), the streaming sampler and the blocking pool.
final class StreamingTests: XCTestCase {
    /// 300 items sent in 7 messages on one stream: `flush` reports all 300, the table holds
    /// them in order with their own bytes, and released chunks leave nothing behind.
    func testWriterSendsManyMessagesOnOneStream() async throws {
        let replay = try ReplayServer(tables: [TableConfig(name: "t", sampler: .fifo, remover: .fifo, maxSize: 1000,
                                                           rateLimiter: try .minSize(1))])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client, chunkLength: 1, maxSequenceLength: 2, maxQueuedMessages: 2)
        var keys: [UInt64] = []
        for i in 0..<300 {
            try writer.append([try Tensor([Float(i), -Float(i)], shape: [2])])
            // Items over the last 2 steps once there are two: chunks are shared and released.
            keys.append(try writer.createItem(table: "t", priority: 1, numSteps: i == 0 ? 1 : 2))
            if i % 50 == 49 { try await writer.send(timeout: .seconds(5)) }
        }
        XCTAssertEqual(writer.pendingItemCount, 0)
        let inserted = try await writer.flush(timeout: .seconds(5))
        XCTAssertEqual(inserted, 300)
        XCTAssertEqual(try replay.table("t").keysInInsertionOrder(), keys)
        let info = replay.info()[0]
        XCTAssertEqual(info.size, 300)
        XCTAssertEqual(info.uniqueChunks, 300)  // one chunk per step, each shared by two items

        // FIFO sampling returns item 0 (1 step); with it deleted, item 1 (steps 0 and 1).
        var s = try await client.sample(table: "t", count: 1, timeout: .seconds(5))
        XCTAssertEqual(s.map(\.info.key), [keys[0]])
        XCTAssertEqual(bytes(s[0].item.column(0)), bytes(try Tensor([Float(0), -Float(0)], shape: [1, 2])))
        try await client.mutatePriorities(table: "t", deletes: [keys[0]])
        s = try await client.sample(table: "t", count: 1, timeout: .seconds(5))
        XCTAssertEqual(s.map(\.info.key), [keys[1]])
        XCTAssertEqual(bytes(s[0].item.column(0)), bytes(try Tensor([Float(0), -Float(0), 1, -1], shape: [2, 2])))

        // A second stream after flush works and counts only its own items.
        try writer.append([try Tensor([Float(7), 7], shape: [2])])
        try writer.createItem(table: "t", priority: 1, numSteps: 2)
        try await writer.send()
        let second = try await writer.flush()
        XCTAssertEqual(second, 1)
        XCTAssertEqual(replay.info()[0].size, 300)
        await client.close()
        try await service.stop()
    }

    /// An item for an unknown table fails the stream: the next send or the flush throws
    /// NOT_FOUND, and the items before it stay inserted.
    func testWriterStreamErrorSurfaces() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client)
        try writer.append([try Tensor([Float(1)], shape: [1])])
        try writer.createItem(table: "t", priority: 1, numSteps: 1)
        try await writer.send()
        try writer.append([try Tensor([Float(2)], shape: [1])])
        try writer.createItem(table: "nope", priority: 1, numSteps: 1)
        let message = await assertRPCError(.notFound) {
            try await writer.send()
            for _ in 0..<50 {
                try writer.append([try Tensor([Float(3)], shape: [1])])
                try writer.createItem(table: "t", priority: 1, numSteps: 1)
                try await writer.send()
                try await Task.sleep(for: .milliseconds(10))
            }
            _ = try await writer.flush()
        }
        XCTAssertTrue(message.contains("nope"), message)
        XCTAssertEqual(replay.info()[0].size, 1)
        await client.close()
        try await service.stop()
    }

    /// `stream` with 3 workers delivers exactly `limit` samples in batches of at most
    /// `batchSize`, and stops a worker early when `onBatch` returns false.
    func testSamplerStream() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client)
        for i in 0..<4 {
            try writer.append([try Tensor([Float(i)], shape: [1])])
            try writer.createItem(table: "t", priority: 1, numSteps: 1)
        }
        try await writer.flush()
        let sampler = try ReplaySampler(client: client, table: "t", batchSize: 3, timeout: .seconds(5))
        let seen = Locked([Int]())
        try await sampler.stream(workers: 3, limit: 20) { batch in
            seen.withLock { $0.append(batch.count) }
            return true
        }
        let sizes = seen.withLock { $0 }
        XCTAssertEqual(sizes.reduce(0, +), 20)
        XCTAssertTrue(sizes.allSatisfy { (1...3).contains($0) }, "\(sizes)")

        let calls = Locked(0)
        try await sampler.stream(workers: 1, limit: 1000) { _ in
            calls.withLock { $0 += 1 }
            return false
        }
        XCTAssertEqual(calls.withLock { $0 }, 1)
        await client.close()
        try await service.stop()
    }

    /// The pool reuses threads for sequential jobs and runs blocked jobs side by side (10
    /// jobs that each wait for all 10 to start finish, so none waits behind another).
    func testBlockingPool() async throws {
        let pool = BlockingPool(maxIdle: 4)
        for i in 0..<100 {
            let r: Int = await withCheckedContinuation { c in pool.submit { { c.resume(returning: i * 2) } } }
            XCTAssertEqual(r, i * 2)
        }
        // Sequential calls reuse the finishing thread (the first thread could be new twice
        // only if it exited, which an idle thread under maxIdle does not).
        XCTAssertEqual(pool.threadCounts.created, 1)

        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        for _ in 0..<10 {
            pool.submit {
                started.signal()
                release.wait()
                return { done.signal() }
            }
        }
        for _ in 0..<10 { XCTAssertEqual(started.wait(timeout: .now() + 10), .success) }
        for _ in 0..<10 { release.signal() }
        for _ in 0..<10 { XCTAssertEqual(done.wait(timeout: .now() + 10), .success) }
        // Idle threads beyond maxIdle exit.
        for _ in 0..<100 where pool.threadCounts.alive > 4 { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertLessThanOrEqual(pool.threadCounts.alive, 4)
        XCTAssertEqual(pool.threadCounts.created, 10)
    }
}

/// A value behind a lock, for test callbacks.
final class Locked<T>: @unchecked Sendable {
    private var value: T
    private let lock = NSLock()
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
