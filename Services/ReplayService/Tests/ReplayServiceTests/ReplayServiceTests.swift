import Foundation
import GRPCCore
import ReplayClient
import ReplayService
import ReplayServiceProto
import ReplayStorage
import TensorCore
import XCTest

/// A replay service on a free loopback port for the duration of one test.
final class RunningService: Sendable {
    let host: ReplayServiceHost
    let port: Int
    /// The framed transport's port (every plaintext test server serves both).
    let framedPort: Int?
    private let task: Task<Void, any Error>

    /// Whether `client()` connects over the framed transport: `LOOM_REPLAY_TEST_TRANSPORT=framed`
    /// (`make test` reruns the service suites that way; XCTest on Linux does not run
    /// inherited test methods, so subclasses cannot do it).
    static let framedClients = ProcessInfo.processInfo.environment["LOOM_REPLAY_TEST_TRANSPORT"] == "framed"

    init(replay: ReplayServer, token: String? = nil, checkpointRoot: String? = nil, tls: ReplayServerTLS? = nil,
         metrics: ReplayMetrics? = nil) async throws {
        let host = ReplayServiceHost(replay: replay, token: token, checkpointRoot: checkpointRoot, tls: tls, metrics: metrics,
                                     framedPort: tls == nil ? 0 : nil)
        self.host = host
        task = Task { try await host.serve() }
        port = try await host.port
        framedPort = try await host.framedPort
    }

    func client(token: String? = nil, tls: ReplayClientTLS? = nil, host: String = "127.0.0.1") throws -> ReplayClient {
        if Self.framedClients && tls == nil, let framedPort {
            return try ReplayClient(host: host, port: framedPort, token: token, transport: .framed)
        }
        return try ReplayClient(host: host, port: port, token: token, tls: tls)
    }

    func stop() async throws {
        host.shutdown()
        try await task.value
    }
}

func bytes(_ t: Tensor) -> [UInt8] { t.withRawBytes { Array($0) } }

func uniformTable(_ name: String, maxSize: Int = 100, minSize: Int = 1) throws -> TableConfig {
    TableConfig(name: name, sampler: .uniform, remover: .fifo, maxSize: maxSize, rateLimiter: try .minSize(minSize))
}

/// Asserts that `body` fails with an `RPCError` of `code`; returns its message.
@discardableResult
func assertRPCError(_ code: RPCError.Code, file: StaticString = #filePath, line: UInt = #line,
                    _ body: () async throws -> Void) async -> String {
    do {
        try await body()
        XCTFail("expected \(code), call succeeded", file: file, line: line)
    } catch let error as RPCError {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        return error.message
    } catch {
        XCTFail("expected RPCError \(code), got \(error)", file: file, line: line)
    }
    return ""
}

final class ReplayServiceTests: XCTestCase {
    /// A writer with 2-step chunks creates an item over the last 3 steps (spanning two
    /// chunks); sampling returns exactly those steps' bytes and the SampleInfo fields.
    func testInsertThenSampleRoundTrip() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client, chunkLength: 2, maxSequenceLength: 8)
        for s in 0..<5 {
            try writer.append([try Tensor([Float(s), Float(s) + 0.5], shape: [2]),
                               try Tensor([Int32(10 * s)], shape: [1])])
        }
        let key = try writer.createItem(table: "t", priority: 2.5, numSteps: 3)
        XCTAssertEqual(writer.pendingItemCount, 1)
        let inserted = try await writer.flush(timeout: .seconds(5))
        XCTAssertEqual(inserted, 1)
        XCTAssertEqual(writer.pendingItemCount, 0)

        let samples = try await client.sample(table: "t", count: 1, timeout: .seconds(5))
        XCTAssertEqual(samples.count, 1)
        let s = samples[0]
        XCTAssertEqual(s.info.key, key)
        XCTAssertEqual(s.info.probability, 1.0)
        XCTAssertEqual(s.info.tableSize, 1)
        XCTAssertEqual(s.info.priority, 2.5)
        XCTAssertEqual(s.info.timesSampled, 1)
        XCTAssertEqual(s.item.length, 3)
        let obs = s.item.column(0)
        XCTAssertEqual(obs.shape, [3, 2])
        XCTAssertEqual(obs.dtype, .float32)
        XCTAssertEqual(bytes(obs), bytes(try Tensor([Float(2), 2.5, 3, 3.5, 4, 4.5], shape: [3, 2])))
        let act = s.item.column(1)
        XCTAssertEqual(act.dtype, .int32)
        XCTAssertEqual(bytes(act), bytes(try Tensor([Int32(20), 30, 40], shape: [3, 1])))

        // Server side: the item shares two chunks.
        let info = try await client.serverInfo()
        XCTAssertEqual(info.map(\.name), ["t"])
        XCTAssertEqual(info[0].size, 1)
        XCTAssertEqual(info[0].inserts, 1)
        XCTAssertEqual(info[0].samples, 1)
        XCTAssertEqual(info[0].uniqueChunks, 2)
        XCTAssertTrue(info[0].configJson.contains("\"maxSize\":100"), info[0].configJson)
        await client.close()
        try await service.stop()
    }

    /// Flexible batches: 5 samples in batches of at most 2 arrive as 5 items.
    func testSamplerBatches() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client)
        for s in 0..<3 {
            try writer.append([try Tensor([Float(s)], shape: [1])])
            try writer.createItem(table: "t", priority: 1, numSteps: 1)
        }
        let flushed = try await writer.flush()
        XCTAssertEqual(flushed, 3)
        let sampler = try ReplaySampler(client: client, table: "t", batchSize: 5, flexibleBatchSize: 2, timeout: .seconds(5))
        let batch = try await sampler.next()
        XCTAssertEqual(batch.count, 5)
        for s in batch {
            XCTAssertEqual(s.info.tableSize, 3)
            XCTAssertEqual(s.info.probability, 1.0 / 3.0, accuracy: 1e-12)
        }
        XCTAssertEqual(replay.info()[0].counters.samples, 5)
        await client.close()
        try await service.stop()
    }

    /// A sample on an empty table blocks (without stalling the server: info still answers)
    /// and wakes when another client inserts.
    func testBlockingSampleWakesOnInsert() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let waiter = Task { try await client.sample(table: "t", count: 1, timeout: .seconds(20)) }
        // Wait until the server sees the blocked sample.
        var waiting: Int64 = 0
        for _ in 0..<200 where waiting == 0 {
            try await Task.sleep(for: .milliseconds(20))
            waiting = try await client.serverInfo()[0].waitingSamples
        }
        XCTAssertEqual(waiting, 1)
        let writer = try TrajectoryWriter(client: try service.client())
        try writer.append([try Tensor([Float(7)], shape: [1])])
        let key = try writer.createItem(table: "t", priority: 1, numSteps: 1)
        try await writer.flush()
        let got = try await waiter.value
        XCTAssertEqual(got.map(\.info.key), [key])
        XCTAssertEqual(bytes(got[0].item.column(0)), bytes(try Tensor([Float(7)], shape: [1, 1])))
        await writer.client.close()
        await client.close()
        try await service.stop()
    }

    func testSampleTimeoutIsDeadlineExceeded() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let start = ContinuousClock.now
        let message = await assertRPCError(.deadlineExceeded) {
            _ = try await client.sample(table: "t", count: 1, timeout: .milliseconds(200))
        }
        XCTAssertTrue(message.hasPrefix("timeout:"), message)
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(200))
        await client.close()
        try await service.stop()
    }

    func testUnknownTableIsNotFound() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let message = await assertRPCError(.notFound) {
            _ = try await client.sample(table: "nope", count: 1, timeout: .seconds(1))
        }
        XCTAssertTrue(message.contains("'nope'"), message)
        await assertRPCError(.notFound) { try await client.reset(table: "nope") }
        let writer = try TrajectoryWriter(client: client)
        try writer.append([try Tensor([Float(1)], shape: [1])])
        try writer.createItem(table: "nope", priority: 1, numSteps: 1)
        await assertRPCError(.notFound) { try await writer.flush() }
        await client.close()
        try await service.stop()
    }

    func testBadDataIsInvalidArgument() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        var request = Loom_Replay_InsertRequest()
        var chunk = Loom_Replay_ChunkData()
        chunk.key = 1
        var column = Loom_Replay_TensorData()
        column.dtype = .float32
        column.shape = [2, 3]
        column.data = Data(count: 20)  // 24 expected
        chunk.columns = [column]
        request.chunks = [chunk]
        let message = await assertRPCError(.invalidArgument) { _ = try await client.insert([request]) }
        XCTAssertTrue(message.contains("20 bytes"), message)
        XCTAssertTrue(message.contains("expected 24"), message)
        // An item naming a chunk never sent.
        var item = Loom_Replay_ItemData()
        item.key = 9
        item.table = "t"
        item.priority = 1
        item.chunkKeys = [42]
        var r2 = Loom_Replay_InsertRequest()
        r2.items = [item]
        await assertRPCError(.invalidArgument) { _ = try await client.insert([r2]) }
        XCTAssertEqual(replay.info()[0].size, 0)
        await client.close()
        try await service.stop()
    }

    func testBearerToken() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay, token: "s3cret")
        let anonymous = try service.client()
        let wrong = try service.client(token: "guess")
        let right = try service.client(token: "s3cret")
        await assertRPCError(.unauthenticated) { _ = try await anonymous.serverInfo() }
        await assertRPCError(.unauthenticated) { _ = try await wrong.serverInfo() }
        await assertRPCError(.unauthenticated) { try await wrong.reset(table: "t") }
        // A refused insert never reaches the table.
        let writer = try TrajectoryWriter(client: wrong)
        try writer.append([try Tensor([Float(1)], shape: [1])])
        try writer.createItem(table: "t", priority: 1, numSteps: 1)
        await assertRPCError(.unauthenticated) { try await writer.flush() }
        XCTAssertEqual(replay.info()[0].size, 0)
        let info = try await right.serverInfo()
        XCTAssertEqual(info.map(\.name), ["t"])
        for c in [anonymous, wrong, right] { await c.close() }
        try await service.stop()
    }

    func testMutatePrioritiesResetAndInfo() async throws {
        let table = TableConfig(name: "p", sampler: .maxHeap, remover: .fifo, maxSize: 10, rateLimiter: try .minSize(1))
        let replay = try ReplayServer(tables: [table, try uniformTable("u")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client)
        var keys: [UInt64] = []
        for s in 0..<3 {
            try writer.append([try Tensor([Float(s)], shape: [1])])
            keys.append(try writer.createItem(table: "p", priority: Double(s), numSteps: 1))
        }
        try await writer.flush()
        // Raise the first item above the others; delete the last.
        try await client.mutatePriorities(table: "p", updates: [(keys[0], 10)], deletes: [keys[2]])
        let top = try await client.sample(table: "p", count: 1, timeout: .seconds(5))
        XCTAssertEqual(top[0].info.key, keys[0])
        XCTAssertEqual(top[0].info.priority, 10)
        XCTAssertEqual(top[0].info.tableSize, 2)
        var info = try await client.serverInfo()
        XCTAssertEqual(info.map(\.name), ["p", "u"])
        XCTAssertEqual(info[0].size, 2)
        XCTAssertEqual(info[0].deletes, 1)
        XCTAssertEqual(info[0].maxSize, 10)
        XCTAssertEqual(info[1].size, 0)
        await assertRPCError(.invalidArgument) {
            try await client.mutatePriorities(table: "p", updates: [(keys[1], -1)])
        }
        try await client.reset(table: "p")
        info = try await client.serverInfo()
        XCTAssertEqual(info[0].size, 0)
        XCTAssertEqual(info[0].inserts, 0)
        await client.close()
        try await service.stop()
    }

    func testCheckpointAndRestartRestores() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("loom-replay-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let configs = [try uniformTable("t")]
        let service = try await RunningService(replay: try ReplayServer(tables: configs, checkpointRoot: root), checkpointRoot: root)
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client, chunkLength: 4)
        for s in 0..<4 { try writer.append([try Tensor([Double(s) * 1.25], shape: [1])]) }
        let key = try writer.createItem(table: "t", priority: 3, numSteps: 4)
        try await writer.flush()
        let path = try await client.checkpoint()
        XCTAssertTrue(path.hasPrefix(root), path)
        await client.close()
        try await service.stop()

        let restarted = try await RunningService(replay: try ReplayServer(tables: configs, checkpointRoot: root), checkpointRoot: root)
        let client2 = try restarted.client()
        let restoredInfo = try await client2.serverInfo()
        XCTAssertEqual(restoredInfo[0].size, 1)
        let s = try await client2.sample(table: "t", count: 1, timeout: .seconds(5))[0]
        XCTAssertEqual(s.info.key, key)
        XCTAssertEqual(s.info.priority, 3)
        XCTAssertEqual(bytes(s.item.column(0)), bytes(try Tensor([Double](arrayLiteral: 0, 1.25, 2.5, 3.75), shape: [4, 1])))
        await client2.close()
        try await restarted.stop()
    }

    func testCheckpointWithoutDirectoryIsFailedPrecondition() async throws {
        let service = try await RunningService(replay: try ReplayServer(tables: [try uniformTable("t")]))
        let client = try service.client()
        await assertRPCError(.failedPrecondition) { _ = try await client.checkpoint() }
        await client.close()
        try await service.stop()
    }

    /// Shutting down wakes a blocked sample with `cancelled`.
    func testShutdownCancelsBlockedSample() async throws {
        let service = try await RunningService(replay: try ReplayServer(tables: [try uniformTable("t")]))
        let client = try service.client()
        let waiter = Task { () -> RPCError.Code? in
            do { _ = try await client.sample(table: "t", count: 1); return nil } catch let e as RPCError { return e.code } catch { return nil }
        }
        var waiting: Int64 = 0
        for _ in 0..<200 where waiting == 0 {
            try await Task.sleep(for: .milliseconds(20))
            waiting = try await client.serverInfo()[0].waitingSamples
        }
        XCTAssertEqual(waiting, 1)
        try await service.stop()
        let code = await waiter.value
        XCTAssertEqual(code, .cancelled)
        await client.close()
    }

    func testErrorKindMapping() {
        XCTAssertEqual(ReplayError.Kind.timeout.statusCode, .deadlineExceeded)
        XCTAssertEqual(ReplayError.Kind.notFound.statusCode, .notFound)
        XCTAssertEqual(ReplayError.Kind.invalidArgument.statusCode, .invalidArgument)
        XCTAssertEqual(ReplayError.Kind.signatureMismatch.statusCode, .invalidArgument)
        XCTAssertEqual(ReplayError.Kind.cancelled.statusCode, .cancelled)
        XCTAssertEqual(ReplayError.Kind.configConflict.statusCode, .failedPrecondition)
        XCTAssertEqual(ReplayError.Kind.alreadyExists.statusCode, .alreadyExists)
        XCTAssertEqual(ReplayError.Kind.checkpoint.statusCode, .internalError)
    }
}
