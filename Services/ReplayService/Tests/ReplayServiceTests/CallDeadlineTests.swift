import Foundation
import GRPCCore
import GRPCProtobuf
import ReplayClient
import ReplayService
import ReplayServiceProto
import ReplayStorage
import TensorCore
import XCTest

/// gRPC call deadlines bound the server's rate-limiter waits like `timeout_ms` does: a
/// client may use plain gRPC deadlines instead, and the server never keeps waiting (and
/// then consuming an item) for a call whose deadline has passed.
final class CallDeadlineTests: XCTestCase {
    /// A Sample call on an empty table with no `timeout_ms` but a 300 ms call deadline
    /// fails with DEADLINE_EXCEEDED, the server's wait ends with it (no waiting sample left),
    /// and an item inserted afterwards is not sampled by the abandoned call.
    func testSampleDeadlineEndsTheServerWait() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        var request = Loom_Replay_SampleRequest()
        request.table = "t"
        request.numSamples = 1
        let message = request
        var options = CallOptions.defaults
        options.timeout = .milliseconds(300)
        let stub = Loom_Replay_ReplayService.Client(wrapping: client.http2!)
        let start = ContinuousClock.now
        await assertRPCError(.deadlineExceeded) {
            try await stub.sample(message, options: options) { response in
                for try await _ in response.messages {}
            }
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(250))
        // The server's blocked sample ends at the deadline too.
        var waiting: Int64 = 1
        for _ in 0..<100 where waiting != 0 {
            try await Task.sleep(for: .milliseconds(20))
            waiting = try await client.serverInfo()[0].waitingSamples
        }
        XCTAssertEqual(waiting, 0)
        XCTAssertEqual(replay.info()[0].sampleStats.timeouts, 1)
        try replay.insert(ReplayItem(key: 1, table: "t", priority: 1,
                                     chunks: [try Chunk(key: 1, columns: [try Tensor([Float(1)], shape: [1])])]))
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertEqual(replay.info()[0].counters.samples, 0)
        await client.close()
        try await service.stop()
    }

    /// An InsertStream call into a full queue table with no `timeout_ms` but a 300 ms call
    /// deadline: the blocked insert ends at the deadline (the table keeps its 2 items, no
    /// waiting insert is left) and the call fails with DEADLINE_EXCEEDED.
    func testInsertDeadlineEndsTheServerWait() async throws {
        let replay = try ReplayServer(tables: [try TableConfig.queue(name: "q", maxSize: 2)])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        var request = Loom_Replay_InsertRequest()
        for k in 1...3 {
            var chunk = Loom_Replay_ChunkData()
            chunk.key = UInt64(k)
            chunk.columns = [Loom_Replay_TensorData(try Tensor([Float(k)], shape: [1, 1]))]
            request.chunks.append(chunk)
            var item = Loom_Replay_ItemData()
            item.key = UInt64(k)
            item.table = "q"
            item.priority = 1
            item.chunkKeys = [UInt64(k)]
            request.items.append(item)
        }
        let message = request
        var options = CallOptions.defaults
        options.timeout = .milliseconds(300)
        let stub = Loom_Replay_ReplayService.Client(wrapping: client.http2!)
        await assertRPCError(.deadlineExceeded) {
            try await stub.insertStream(options: options, requestProducer: { writer in try await writer.write(message) }) { response in
                for try await _ in response.messages {}
            }
        }
        var waiting: Int64 = 1
        for _ in 0..<100 where waiting != 0 {
            try await Task.sleep(for: .milliseconds(20))
            waiting = try await client.serverInfo()[0].waitingInserts
        }
        XCTAssertEqual(waiting, 0)
        XCTAssertEqual(replay.info()[0].size, 2)
        await client.close()
        try await service.stop()
    }

    /// `ReplayClient`'s wrappers pass `deadline:` as the gRPC call deadline: a sample on an
    /// empty table (no rate-limiter `timeout`) and a sample stream fail with
    /// DEADLINE_EXCEEDED naming the call and the deadline, after about the deadline, and
    /// leave no waiting sample on the server; calls that finish in time are unaffected.
    func testClientWrappersTakeADeadline() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let service = try await RunningService(replay: replay)
        let client = try service.client()
        let start = ContinuousClock.now
        let message = await assertRPCError(.deadlineExceeded) {
            _ = try await client.sample(table: "t", count: 1, deadline: .milliseconds(300))
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(250))
        XCTAssertTrue(message.contains("sample from 't'") && message.contains("call deadline of 0.3 seconds exceeded"), message)
        let streamMessage = await assertRPCError(.deadlineExceeded) {
            let asked = Locked(false)
            try await client.sampleStream(table: "t", deadline: .milliseconds(200), more: {
                // One request, then wait (until the call ends and cancels this).
                if asked.withLock({ was in defer { was = true }; return was }) {
                    try? await Task.sleep(for: .seconds(30))
                    return 0
                }
                return 1
            }, onBatch: { _ in })
        }
        XCTAssertTrue(streamMessage.contains("sample stream from 't'") && streamMessage.contains("call deadline"), streamMessage)
        var waiting: Int64 = 1
        for _ in 0..<100 where waiting != 0 {
            try await Task.sleep(for: .milliseconds(20))
            waiting = try await client.serverInfo(deadline: .seconds(5))[0].waitingSamples
        }
        XCTAssertEqual(waiting, 0)
        // The rate-limiter timeout keeps its own message (no call deadline named).
        let limiterMessage = await assertRPCError(.deadlineExceeded) {
            _ = try await client.sample(table: "t", count: 1, timeout: .milliseconds(100))
        }
        XCTAssertFalse(limiterMessage.contains("call deadline"), limiterMessage)
        // In time: every wrapper works with a deadline.
        try replay.insert(ReplayItem(key: 1, table: "t", priority: 1,
                                     chunks: [try Chunk(key: 1, columns: [try Tensor([Float(1)], shape: [1])])]))
        let got = try await client.sample(table: "t", count: 2, deadline: .seconds(5))
        XCTAssertEqual(got.map(\.info.key), [1, 1])
        try await client.mutatePriorities(table: "t", updates: [(key: 1, priority: 2)], deadline: .seconds(5))
        let info = try await client.serverInfo(deadline: .seconds(5))
        XCTAssertEqual(info[0].size, 1)
        try await client.reset(table: "t", deadline: .seconds(5))
        XCTAssertEqual(replay.info()[0].size, 0)
        await client.close()
        try await service.stop()
    }

    /// `callDeadline` reads gRPC's `grpc-timeout` header (every unit) and ignores a missing
    /// or malformed one.
    func testCallDeadlineParsesGRPCTimeout() {
        func left(_ value: String?) -> Duration? {
            var md = Metadata()
            if let value { md.addString(value, forKey: "grpc-timeout") }
            return callDeadline(md).map { $0 - ContinuousClock.now }
        }
        let cases: [(String, Duration)] = [("2H", .seconds(7200)), ("3M", .seconds(180)), ("4S", .seconds(4)),
                                           ("250m", .milliseconds(250)), ("900u", .microseconds(900)),
                                           ("5000000n", .milliseconds(5))]
        for (value, expected) in cases {
            guard let d = left(value) else { XCTFail("\(value): no deadline"); continue }
            XCTAssertLessThanOrEqual(d, expected, value)
            XCTAssertGreaterThan(d, expected - .milliseconds(100), value)
        }
        for bad in [nil, "", "S", "12", "-1S", "1x", "123456789S"] { XCTAssertNil(left(bad), "\(bad ?? "nil")") }
    }
}
