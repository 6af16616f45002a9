import Foundation
import GRPCCore
import ReplayClient
import ReplayService
import ReplayServiceProto
import ReplayStorage
import TensorCore
import XCTest

/// The bidirectional SampleStream RPC: requests served in order on one call, the same
/// error statuses as Sample, and calls that end on client cancellation and server shutdown.
final class SampleStreamRPCTests: XCTestCase {
    /// Three requests on one call (20, 5, 33 items; responses of up to 8): the responses
    /// carry the FIFO table's items in order, none beyond what was asked, each response at
    /// most 8 long and never spanning two requests; the call ends once the request side is
    /// closed and everything was answered.
    func testRequestsServedInOrderOnOneCall() async throws {
        let (replay, service, client) = try await queueService(items: 100)
        let asks = Locked([20, 5, 33])
        let responses = Locked([[UInt64]]())
        try await client.sampleStream(table: "q", flexibleBatchSize: 8, timeout: .seconds(5), more: {
            asks.withLock { $0.isEmpty ? 0 : $0.removeFirst() }
        }, onBatch: { batch in
            responses.withLock { $0.append(batch.map(\.info.key)) }
            for s in batch { XCTAssertEqual(s.item.column(0).scalars(as: Float.self), [Float(s.info.key)]) }
        })
        let got = responses.withLock { $0 }
        XCTAssertEqual(got.map(\.count), [8, 8, 4, 5, 8, 8, 8, 8, 1])
        XCTAssertEqual(got.flatMap { $0 }, (0..<58).map(UInt64.init))
        XCTAssertEqual(replay.info()[0].counters.samples, 58)
        await client.close()
        try await service.stop()
    }

    /// Flexible batch 0 answers each request in one response.
    func testFlexibleBatchZeroIsOneResponsePerRequest() async throws {
        let (_, service, client) = try await queueService(items: 50)
        let asks = Locked([7, 12])
        let sizes = Locked([Int]())
        try await client.sampleStream(table: "q", flexibleBatchSize: 0, timeout: .seconds(5), more: {
            asks.withLock { $0.isEmpty ? 0 : $0.removeFirst() }
        }, onBatch: { batch in sizes.withLock { $0.append(batch.count) } })
        XCTAssertEqual(sizes.withLock { $0 }, [7, 12])
        await client.close()
        try await service.stop()
    }

    /// Errors end the call with Sample's statuses: unknown table NOT_FOUND (naming it),
    /// num_samples < 1 INVALID_ARGUMENT, an empty table past the request's timeout
    /// DEADLINE_EXCEEDED ("timeout: ..."); samples answered before a failing request are
    /// delivered first.
    func testErrorsMapToSampleStatuses() async throws {
        let (replay, service, client) = try await queueService(items: 10)
        let notFound = await assertRPCError(.notFound) {
            try await client.sampleStream(table: "nope", timeout: .seconds(1), more: SampleStreamRPCTests.askOnceThenIdle(4), onBatch: { _ in })
        }
        XCTAssertTrue(notFound.contains("'nope'"), notFound)

        // Asking for 0 ends the request side on the client; send -1 through the raw stub.
        await assertRPCError(.invalidArgument) {
            var r = Loom_Replay_SampleRequest()
            r.table = "q"
            r.numSamples = -1
            let request = r
            let stub = Loom_Replay_ReplayService.Client(wrapping: client.http2!)
            try await stub.sampleStream(requestProducer: { writer in try await writer.write(request) }) { response in
                for try await _ in response.messages {}
            }
        }

        // 10 items, then a request for 5 more on the (now empty) queue table: the first 10
        // arrive, then DEADLINE_EXCEEDED after the 200 ms timeout.
        let asks = Locked([10, 5])
        let received = Locked(0)
        let start = ContinuousClock.now
        let message = await assertRPCError(.deadlineExceeded) {
            try await client.sampleStream(table: "q", flexibleBatchSize: 4, timeout: .milliseconds(200), more: {
                asks.withLock { $0.isEmpty ? 0 : $0.removeFirst() }
            }, onBatch: { batch in received.withLock { $0 += batch.count } })
        }
        XCTAssertTrue(message.hasPrefix("timeout:"), message)
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(200))
        XCTAssertEqual(received.withLock { $0 }, 10)
        XCTAssertEqual(replay.info()[0].counters.samples, 10)
        await client.close()
        try await service.stop()
    }

    /// A call idle between requests (the client asks for nothing more but keeps the stream
    /// open) and a call blocked on an empty table both end with CANCELLED when the host
    /// shuts down, and the shutdown does not wait for their clients.
    func testShutdownEndsIdleAndBlockedStreams() async throws {
        let (_, service, client) = try await queueService(items: 3)
        let idleReceived = Locked(0)
        let idle = Task { await SampleStreamRPCTests.idleStream(client, ask: 3, timeout: .seconds(30), received: idleReceived) }
        // Wait until the idle call got its 3 samples; then block a second call.
        for _ in 0..<200 where idleReceived.withLock({ $0 }) < 3 { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(idleReceived.withLock { $0 }, 3)
        let blocked = Task { await SampleStreamRPCTests.idleStream(client, ask: 1, timeout: nil, received: Locked(0)) }
        var waiting: Int64 = 0
        for _ in 0..<200 where waiting == 0 {
            try await Task.sleep(for: .milliseconds(20))
            waiting = try await client.serverInfo()[0].waitingSamples
        }
        XCTAssertEqual(waiting, 1)
        XCTAssertEqual(service.host.service.closer.openStreams, 2)
        let start = ContinuousClock.now
        try await service.stop()
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(10))
        let idleCode = await idle.value
        let blockedCode = await blocked.value
        XCTAssertEqual(idleCode, .cancelled)
        XCTAssertEqual(blockedCode, .cancelled)
        await client.close()
    }

    /// Cancelling the client's task ends an idle call on both sides: the request producer
    /// waiting in `more()` is cancelled, the call throws, and the server's handler ends.
    func testClientCancellationEndsTheCall() async throws {
        let (_, service, client) = try await queueService(items: 2)
        let received = Locked(0)
        let call = Task { await SampleStreamRPCTests.idleStream(client, ask: 2, timeout: .seconds(30), received: received) }
        for _ in 0..<200 where received.withLock({ $0 }) < 2 { try await Task.sleep(for: .milliseconds(10)) }
        let closer = service.host.service.closer
        XCTAssertEqual(closer.openStreams, 1)
        call.cancel()
        let outcome = await call.value
        XCTAssertNotNil(outcome, "the cancelled call returned normally")
        // The server's handler ended too (without the host shutting down).
        for _ in 0..<500 where closer.openStreams > 0 { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(closer.openStreams, 0)
        await client.close()
        try await service.stop()
    }

    /// `ReplaySamples` over SampleStream with a tight budget: a consumer that reads slowly
    /// never has more than `maxInFlight` samples sampled ahead of it (server count minus
    /// consumed), and the whole run gets every item once.
    func testSamplesRespectInFlightBudgetOnStreams() async throws {
        let (replay, service, client) = try await queueService(items: 400)
        let sampler = try ReplaySampler(client: client, table: "q", batchSize: 1, timeout: .seconds(5))
        var it = try sampler.samples(limit: 300, workers: 2, maxInFlight: 24, flexibleBatchSize: 4).makeAsyncIterator()
        var keys: [UInt64] = []
        var worstAhead = 0
        while let s = try await it.next() {
            keys.append(s.info.key)
            if keys.count % 25 == 0 {
                try await Task.sleep(for: .milliseconds(20))  // let the workers run ahead
                worstAhead = max(worstAhead, replay.info()[0].counters.samples - keys.count)
            }
        }
        XCTAssertEqual(keys.count, 300)
        XCTAssertEqual(Set(keys), Set((0..<300).map(UInt64.init)))
        XCTAssertLessThanOrEqual(worstAhead, 24)
        XCTAssertGreaterThan(worstAhead, 0)
        XCTAssertEqual(replay.info()[0].counters.samples, 300)
        await client.close()
        try await service.stop()
    }

    // MARK: Helpers

    /// Runs a SampleStream call on "q" that asks for `ask` samples once and then stays open
    /// asking for nothing; returns the status code it ended with (nil: it ended OK; `.unknown`
    /// for a non-RPC error).
    private static func idleStream(_ client: ReplayClient, ask: Int, timeout: Duration?, received: Locked<Int>) async -> RPCError.Code? {
        do {
            try await client.sampleStream(table: "q", timeout: timeout, more: askOnceThenIdle(ask)) { batch in
                received.withLock { $0 += batch.count }
            }
            return nil
        } catch let e as RPCError {
            return e.code
        } catch {
            return .unknown
        }
    }

    /// A `more` that asks for `n` once, then keeps the request side open (asking for
    /// nothing) until its task is cancelled.
    private static func askOnceThenIdle(_ n: Int) -> @Sendable () async -> Int {
        let asked = Locked(false)
        return {
            if !asked.withLock({ a in defer { a = true }; return a }) { return n }
            try? await Task.sleep(for: .seconds(3600))
            return 0
        }
    }

    /// A service with table "q": FIFO, each item sampled once, MinSize(1); items 0..<n
    /// inserted in order (key i holds float32 [i]).
    private func queueService(items n: Int) async throws -> (ReplayServer, RunningService, ReplayClient) {
        let replay = try ReplayServer(tables: [TableConfig(name: "q", sampler: .fifo, remover: .fifo, maxSize: 100_000,
                                                           maxTimesSampled: 1, rateLimiter: try .minSize(1))])
        for i in 0..<n {
            try replay.insert(ReplayItem(key: UInt64(i), table: "q", priority: 1,
                                         chunks: [try Chunk(key: UInt64(i), columns: [try Tensor([Float(i)], shape: [1])])]))
        }
        let service = try await RunningService(replay: replay)
        return (replay, service, try service.client())
    }
}
