import Foundation
import GRPCCore
import ReplayServiceProto
import ReplayStorage
import TensorCore

/// The gRPC replay service: maps each RPC of `loom.replay.ReplayService` onto one
/// `ReplayServer` method.
///
/// Blocking calls (insert, sample) run on threads of their own (`runBlocking`), so a sample
/// waiting for data stalls neither the NIO event loops nor the cooperative thread pool; a
/// sample batch the rate limiter allows at once is taken inline (`ReplayTable.trySample`).
/// Sample responses are encoded by `SampleBatchSerializer` (see `registerMethods`).
/// Errors become statuses through `RPCError.init(_: ReplayError)`.
public struct ReplayGRPCService: Loom_Replay_ReplayService.SimpleServiceProtocol {
    /// The tables served.
    public let replay: ReplayServer
    /// Where `Checkpoint` writes; nil refuses `Checkpoint` with `failedPrecondition`.
    public let checkpointRoot: String?
    /// Instruments updated on every insert and sample (nil: none).
    public let metrics: ReplayMetrics?
    /// Ends the long-lived streams when the host shuts down (`ReplayServiceHost.shutdown`).
    public let closer = StreamCloser()

    /// A service over `replay`, checkpointing under `checkpointRoot` when given and
    /// counting calls in `metrics` when given.
    public init(replay: ReplayServer, checkpointRoot: String? = nil, metrics: ReplayMetrics? = nil) {
        self.replay = replay
        self.checkpointRoot = checkpointRoot
        self.metrics = metrics
    }

    public func insert(request: RPCAsyncSequence<Loom_Replay_InsertRequest, any Error>,
                       context: ServerContext) async throws -> Loom_Replay_InsertResponse {
        try await insert(request: request, deadline: nil)
    }

    /// The Insert RPC with the call's deadline (`callDeadline`), which caps every
    /// rate-limiter wait like `timeout_ms` does.
    public func insert(request: RPCAsyncSequence<Loom_Replay_InsertRequest, any Error>,
                       deadline: ContinuousClock.Instant?) async throws -> Loom_Replay_InsertResponse {
        var cache: [UInt64: Chunk] = [:]
        var inserted: UInt64 = 0
        do throws(ReplayError) {
            var messages = request.makeAsyncIterator()
            while let message = try await nextMessage(&messages, "insert") {
                let outcome = try await insertMessage(message, cache: &cache, deadline: deadline)
                inserted += UInt64(outcome.keys.count)
                if let error = outcome.error { throw error }
            }
        } catch {
            throw RPCError(error)
        }
        var response = Loom_Replay_InsertResponse()
        response.itemsInserted = inserted
        return response
    }

    /// Inserts the items of one Insert(Stream) message: caches its chunks, resolves each
    /// item's chunk keys against `cache`, inserts the items in order (each waiting for the
    /// rate limiter up to the message's timeout, capped by the call's `deadline`), then drops
    /// the released chunks. Throws
    /// for a malformed message (nothing inserted); returns the keys inserted and the insert
    /// failure that stopped the message, if any (the keys are those before it).
    func insertMessage(_ message: Loom_Replay_InsertRequest, cache: inout [UInt64: Chunk],
                       deadline: ContinuousClock.Instant? = nil) async throws(ReplayError)
        -> (keys: [UInt64], error: ReplayError?) {
        let replay = self.replay
        let wire = try wireTimeout(message.timeoutMs, "insert")
        for c in message.chunks {
            var columns: [Tensor] = []
            columns.reserveCapacity(c.columns.count)
            for (i, col) in c.columns.enumerated() { columns.append(try col.tensor("chunk \(c.key) column \(i)")) }
            cache[c.key] = try Chunk(key: c.key, columns: columns)
        }
        var items: [ReplayItem] = []
        items.reserveCapacity(message.items.count)
        for it in message.items {
            var chunks: [Chunk] = []
            for k in it.chunkKeys {
                guard let c = cache[k] else {
                    throw ReplayError(.invalidArgument,
                                      "item \(it.key) for table '\(it.table)': chunk \(k) was not sent on this stream (or was released); expected one of \(cache.keys.sorted().prefix(16))\(cache.count > 16 ? " ..." : "")")
                }
                chunks.append(c)
            }
            guard it.offset >= 0, it.length >= 0 else {
                throw ReplayError(.invalidArgument,
                                  "item \(it.key) for table '\(it.table)': offset \(it.offset) and length \(it.length) must be >= 0 (length 0 = to the end)")
            }
            items.append(ReplayItem(key: it.key, table: it.table, priority: it.priority, chunks: chunks,
                                    offset: Int(it.offset), length: it.length == 0 ? nil : Int(it.length)))
        }
        for k in message.releaseChunkKeys { cache[k] = nil }
        guard !items.isEmpty else { return ([], nil) }
        // One hand-off to a blocking thread per message, not per item: the items of a
        // message are inserted in order, each waiting for the rate limiter as needed.
        let batch = items
        let result = try await runBlocking { () throws(ReplayError) -> BatchOutcome in
            var done = 0
            let start = ContinuousClock.now
            for item in batch {
                do throws(ReplayError) {
                    let timeout = try waitLimit(wire, deadline: deadline, "insert of item \(item.key) into '\(item.table)'")
                    try replay.insert(item, timeout: timeout)
                } catch {
                    return BatchOutcome(done: done, error: error, elapsed: ContinuousClock.now - start)
                }
                done += 1
            }
            return BatchOutcome(done: done, error: nil, elapsed: ContinuousClock.now - start)
        }
        metrics?.recordInserts(items: items.prefix(result.done), elapsed: result.elapsed)
        return (items.prefix(result.done).map(\.key), result.error)
    }

    /// How far one message's items got: `done` inserted, then `error` (if any).
    struct BatchOutcome: Sendable {
        var done: Int
        var error: ReplayError?
        var elapsed: Duration
    }

    /// The next request message; a transport error is rethrown as is (it is already an
    /// RPC-level failure), typed errors are kept typed.
    func nextMessage(
        _ it: inout RPCAsyncSequence<Loom_Replay_InsertRequest, any Error>.AsyncIterator, _ what: String
    ) async throws(ReplayError) -> Loom_Replay_InsertRequest? {
        do {
            return try await it.next()
        } catch {
            throw ReplayError(.cancelled, "\(what) ended with an error: \(error)")
        }
    }

    /// The generated protocol's Sample handler, over generated messages. The served route
    /// is `sampleBatches` (registered by `registerMethods` with `SampleBatchSerializer`);
    /// this one stays for callers holding the service as a `SimpleServiceProtocol`.
    public func sample(request: Loom_Replay_SampleRequest, response: RPCWriter<Loom_Replay_SampleResponse>,
                       context: ServerContext) async throws {
        try await sampleBatches(request: request, context: context) { samples in
            try await response.write(Loom_Replay_SampleResponse(samples))
        }
    }

    /// Streams `request.num_samples` samples in flexible batches of up to
    /// `request.flexible_batch_size` (0 = all in one), calling `write` with each batch.
    ///
    /// Each batch is one table call under one lock (`ReplayTable.trySample`), run inline on
    /// this task when the rate limiter allows a sample now (the common case: no thread
    /// hand-off); only a batch that must wait goes to the blocking pool (`runBlocking`).
    ///
    /// Each wait is bounded by `request.timeout_ms` and by the call's `deadline` (from its
    /// `grpc-timeout` header; see `callDeadline`), whichever ends first; either ends the call
    /// with DEADLINE_EXCEEDED ("timeout: ...").
    public func sampleBatches(request: Loom_Replay_SampleRequest, context: ServerContext,
                              deadline: ContinuousClock.Instant? = nil,
                              write: ([ReplaySample]) async throws -> Void) async throws {
        let metrics = self.metrics
        let name = request.table
        let table: ReplayTable
        let count: Int
        let batch: Int
        let timeout: Duration?
        do throws(ReplayError) {
            table = try replay.table(name)
            guard request.numSamples >= 1 else {
                throw ReplayError(.invalidArgument, "sample from '\(name)': num_samples \(request.numSamples) must be >= 1")
            }
            guard request.flexibleBatchSize >= 0 else {
                throw ReplayError(.invalidArgument,
                                  "sample from '\(name)': flexible_batch_size \(request.flexibleBatchSize) must be >= 0 (0 = all at once)")
            }
            timeout = try wireTimeout(request.timeoutMs, "sample from '\(name)'")
            count = Int(request.numSamples)
            batch = request.flexibleBatchSize == 0 ? count : Int(request.flexibleBatchSize)
        } catch {
            throw RPCError(error)
        }
        var remaining = count
        // A client that stops reading cancels the call. gRPC reports that through
        // `context.cancellation`, not by cancelling this task: without the check, a cancelled
        // stream kept sampling and writing into the void (the bench's first b1 runs starved
        // behind such streams). A blocking wait itself is not interruptible; check between
        // batches.
        while remaining > 0 && !context.cancellation.isCancelled && !Task.isCancelled {
            let n = Swift.min(batch, remaining)
            let samples: [ReplaySample]
            do throws(ReplayError) {
                let start = ContinuousClock.now
                let ready = try table.trySample(count: n)
                if !ready.isEmpty {
                    samples = ready
                } else {
                    let limit = try waitLimit(timeout, deadline: deadline, "sample from '\(name)'")
                    samples = try await runBlocking { () throws(ReplayError) in
                        try table.sample(count: n, timeout: limit)
                    }
                }
                metrics?.recordSamples(table: name, count: samples.count, elapsed: ContinuousClock.now - start)
            } catch {
                throw RPCError(error)
            }
            try await write(samples)
            remaining -= samples.count
        }
    }

    public func mutatePriorities(request: Loom_Replay_MutatePrioritiesRequest,
                                 context: ServerContext) async throws -> Loom_Replay_MutatePrioritiesResponse {
        do throws(ReplayError) {
            try replay.mutatePriorities(table: request.table,
                                        updates: request.updates.map { (key: $0.key, priority: $0.priority) },
                                        deletes: request.deletes)
        } catch {
            throw RPCError(error)
        }
        return Loom_Replay_MutatePrioritiesResponse()
    }

    public func reset(request: Loom_Replay_ResetRequest, context: ServerContext) async throws -> Loom_Replay_ResetResponse {
        do throws(ReplayError) {
            try replay.reset(table: request.table)
        } catch {
            throw RPCError(error)
        }
        return Loom_Replay_ResetResponse()
    }

    public func serverInfo(request: Loom_Replay_ServerInfoRequest,
                           context: ServerContext) async throws -> Loom_Replay_ServerInfoResponse {
        var response = Loom_Replay_ServerInfoResponse()
        response.tables = replay.info().map(Loom_Replay_TableInfo.init)
        return response
    }

    public func checkpoint(request: Loom_Replay_CheckpointRequest,
                           context: ServerContext) async throws -> Loom_Replay_CheckpointResponse {
        guard let root = checkpointRoot else {
            throw RPCError(code: .failedPrecondition, message: "checkpoint: the server has no checkpoint directory (start it with --checkpoint-dir)")
        }
        let replay = self.replay
        var response = Loom_Replay_CheckpointResponse()
        do throws(ReplayError) {
            response.path = try await runBlocking { () throws(ReplayError) in try replay.checkpoint(to: root) }
        } catch {
            throw RPCError(error)
        }
        return response
    }
}
