import Foundation
import GRPCCore
import ReplayServiceProto
import ReplayStorage
import TensorCore

/// The gRPC replay service: maps each RPC of `loom.replay.ReplayService` onto one
/// `ReplayServer` method.
///
/// Blocking calls (insert, sample) run on threads of their own (`runBlocking`), so a sample
/// waiting for data stalls neither the NIO event loops nor the cooperative thread pool.
/// Errors become statuses through `RPCError.init(_: ReplayError)`.
public struct ReplayGRPCService: Loom_Replay_ReplayService.SimpleServiceProtocol {
    /// The tables served.
    public let replay: ReplayServer
    /// Where `Checkpoint` writes; nil refuses `Checkpoint` with `failedPrecondition`.
    public let checkpointRoot: String?

    /// A service over `replay`, checkpointing under `checkpointRoot` when given.
    public init(replay: ReplayServer, checkpointRoot: String? = nil) {
        self.replay = replay
        self.checkpointRoot = checkpointRoot
    }

    public func insert(request: RPCAsyncSequence<Loom_Replay_InsertRequest, any Error>,
                       context: ServerContext) async throws -> Loom_Replay_InsertResponse {
        let replay = self.replay
        var cache: [UInt64: Chunk] = [:]
        var inserted: UInt64 = 0
        do throws(ReplayError) {
            var messages = request.makeAsyncIterator()
            while let message = try await nextMessage(&messages) {
                let timeout = try wireTimeout(message.timeoutMs, "insert")
                for c in message.chunks {
                    var columns: [Tensor] = []
                    for (i, col) in c.columns.enumerated() { columns.append(try col.tensor("chunk \(c.key) column \(i)")) }
                    cache[c.key] = try Chunk(key: c.key, columns: columns)
                }
                for it in message.items {
                    var chunks: [Chunk] = []
                    for k in it.chunkKeys {
                        guard let c = cache[k] else {
                            throw ReplayError(.invalidArgument,
                                              "item \(it.key) for table '\(it.table)': chunk \(k) was not sent on this stream (or was released); expected one of \(cache.keys.sorted())")
                        }
                        chunks.append(c)
                    }
                    guard it.offset >= 0, it.length >= 0 else {
                        throw ReplayError(.invalidArgument,
                                          "item \(it.key) for table '\(it.table)': offset \(it.offset) and length \(it.length) must be >= 0 (length 0 = to the end)")
                    }
                    let item = ReplayItem(key: it.key, table: it.table, priority: it.priority, chunks: chunks,
                                          offset: Int(it.offset), length: it.length == 0 ? nil : Int(it.length))
                    try await runBlocking { () throws(ReplayError) in try replay.insert(item, timeout: timeout) }
                    inserted += 1
                }
                for k in message.releaseChunkKeys { cache[k] = nil }
            }
        } catch {
            throw RPCError(error)
        }
        var response = Loom_Replay_InsertResponse()
        response.itemsInserted = inserted
        return response
    }

    /// The next request message; a transport error is rethrown as is (it is already an
    /// RPC-level failure), typed errors are kept typed.
    private func nextMessage(
        _ it: inout RPCAsyncSequence<Loom_Replay_InsertRequest, any Error>.AsyncIterator
    ) async throws(ReplayError) -> Loom_Replay_InsertRequest? {
        do {
            return try await it.next()
        } catch {
            throw ReplayError(.cancelled, "insert stream ended with an error: \(error)")
        }
    }

    public func sample(request: Loom_Replay_SampleRequest, response: RPCWriter<Loom_Replay_SampleResponse>,
                       context: ServerContext) async throws {
        let replay = self.replay
        let table = request.table
        let count: Int
        let batch: Int
        let timeout: Duration?
        do throws(ReplayError) {
            _ = try replay.table(table)
            guard request.numSamples >= 1 else {
                throw ReplayError(.invalidArgument, "sample from '\(table)': num_samples \(request.numSamples) must be >= 1")
            }
            guard request.flexibleBatchSize >= 0 else {
                throw ReplayError(.invalidArgument,
                                  "sample from '\(table)': flexible_batch_size \(request.flexibleBatchSize) must be >= 0 (0 = all at once)")
            }
            timeout = try wireTimeout(request.timeoutMs, "sample from '\(table)'")
            count = Int(request.numSamples)
            batch = request.flexibleBatchSize == 0 ? count : Int(request.flexibleBatchSize)
        } catch {
            throw RPCError(error)
        }
        var remaining = count
        while remaining > 0 {
            let n = Swift.min(batch, remaining)
            let samples: [ReplaySample]
            do throws(ReplayError) {
                samples = try await runBlocking { () throws(ReplayError) in
                    try replay.sample(table: table, count: n, timeout: timeout)
                }
            } catch {
                throw RPCError(error)
            }
            var message = Loom_Replay_SampleResponse()
            message.items = samples.map { s in
                var item = Loom_Replay_SampledItem()
                item.info = Loom_Replay_SampleInfo(s.info)
                item.columns = (0..<s.item.columnCount).map { Loom_Replay_TensorData(s.item.column($0)) }
                return item
            }
            try await response.write(message)
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
