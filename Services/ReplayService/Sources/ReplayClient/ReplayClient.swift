import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import ReplayService
import ReplayServiceProto
import ReplayStorage
import TensorCore

/// A connection to a Loom replay service: typed wrappers around each RPC.
///
/// Errors are the server's `RPCError`s (codes as documented in `replay.proto`). Call
/// `close()` when done; it waits for the connection to shut down.
public final class ReplayClient: Sendable {
    /// The underlying grpc-swift client.
    public let grpc: GRPCClient<HTTP2ClientTransport.Posix>
    private let stub: Loom_Replay_ReplayService.Client<HTTP2ClientTransport.Posix>
    private let metadata: Metadata
    private let connections: Task<Void, Never>

    /// A client of the service at `host:port`, sending `authorization: Bearer <token>`
    /// with every call when `token` is set.
    public init(host: String = "127.0.0.1", port: Int, token: String? = nil) throws {
        let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: host, port: port), transportSecurity: .plaintext)
        let grpc = GRPCClient(transport: transport)
        self.grpc = grpc
        stub = Loom_Replay_ReplayService.Client(wrapping: grpc)
        var md = Metadata()
        if let token { md.addString("Bearer \(token)", forKey: "authorization") }
        metadata = md
        connections = Task { try? await grpc.runConnections() }
    }

    /// Stops the connection (in-flight calls finish first).
    public func close() async {
        grpc.beginGracefulShutdown()
        await connections.value
    }

    /// Sends `requests` on one Insert stream; returns how many items the server inserted.
    public func insert(_ requests: [Loom_Replay_InsertRequest]) async throws -> UInt64 {
        let response = try await stub.insert(metadata: metadata) { writer in
            for r in requests { try await writer.write(r) }
        }
        return response.itemsInserted
    }

    /// Samples `count` items of `table` in batches of up to `batchSize` (0 = one batch),
    /// each batch waiting at most `timeout` (nil = forever). Items come back with one chunk
    /// holding their trajectory.
    public func sample(table: String, count: Int, batchSize: Int = 0, timeout: Duration? = nil) async throws -> [ReplaySample] {
        var request = Loom_Replay_SampleRequest()
        request.table = table
        request.numSamples = Int64(count)
        request.flexibleBatchSize = Int64(batchSize)
        request.timeoutMs = timeout.map(Self.milliseconds) ?? 0
        let batches = try await stub.sample(request, metadata: metadata) { response in
            var all: [Loom_Replay_SampleResponse] = []
            for try await message in response.messages { all.append(message) }
            return all
        }
        var samples: [ReplaySample] = []
        for batch in batches {
            for item in batch.items { samples.append(try Self.decode(item, table: table)) }
        }
        return samples
    }

    /// Rebuilds a sample from the wire: one chunk keyed by the item key.
    static func decode(_ item: Loom_Replay_SampledItem, table: String) throws(ReplayError) -> ReplaySample {
        let info = SampleInfo(wire: item.info)
        var columns: [Tensor] = []
        for (i, c) in item.columns.enumerated() { columns.append(try c.tensor("sampled item \(info.key) column \(i)")) }
        let chunk = try Chunk(key: info.key, columns: columns)
        return ReplaySample(item: ReplayItem(key: info.key, table: table, priority: info.priority, chunks: [chunk]), info: info)
    }

    /// Sets priorities of `updates` and deletes `deletes` in `table`.
    public func mutatePriorities(table: String, updates: [(key: UInt64, priority: Double)] = [], deletes: [UInt64] = []) async throws {
        var request = Loom_Replay_MutatePrioritiesRequest()
        request.table = table
        request.updates = updates.map { u in
            var kp = Loom_Replay_KeyWithPriority()
            kp.key = u.key
            kp.priority = u.priority
            return kp
        }
        request.deletes = deletes
        _ = try await stub.mutatePriorities(request, metadata: metadata)
    }

    /// Empties `table`.
    public func reset(table: String) async throws {
        var request = Loom_Replay_ResetRequest()
        request.table = table
        _ = try await stub.reset(request, metadata: metadata)
    }

    /// Sizes and counters of every table, in the server's config order.
    public func serverInfo() async throws -> [Loom_Replay_TableInfo] {
        try await stub.serverInfo(Loom_Replay_ServerInfoRequest(), metadata: metadata).tables
    }

    /// Asks the server to write a checkpoint; returns its directory.
    public func checkpoint() async throws -> String {
        try await stub.checkpoint(Loom_Replay_CheckpointRequest(), metadata: metadata).path
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        let c = d.components
        return Swift.max(1, c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000)
    }
}
