import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import ReplayService
import ReplayServiceProto
import SwiftProtobuf
import ReplayStorage
import TensorCore

/// A connection to a Loom replay service: typed wrappers around each RPC.
///
/// Errors are the server's `RPCError`s (codes as documented in `replay.proto`); a server
/// that cannot be reached (not running, or TLS on one side only) fails at once with
/// `unavailable` and a message naming the address and the security used. Call `close()`
/// when done; it waits for the connection to shut down.
public final class ReplayClient: Sendable {
    /// The underlying grpc-swift client (`GRPCClient<HTTP2ClientTransport.Posix>` or
    /// `GRPCClient<FramedClientTransport>`, by `transport`).
    public let grpc: any ReplayCalls
    /// `grpc` when this client speaks HTTP/2 (to wrap in a generated stub), else nil.
    public var http2: GRPCClient<HTTP2ClientTransport.Posix>? { grpc as? GRPCClient<HTTP2ClientTransport.Posix> }
    /// `grpc` when this client speaks the framed transport, else nil.
    public var framed: GRPCClient<FramedClientTransport>? { grpc as? GRPCClient<FramedClientTransport> }
    let metadata: Metadata
    let options: CallOptions
    /// `host:port (plaintext|TLS)`, for error messages.
    let endpoint: String
    /// What `init` was given (for `connect()`).
    private let settings: Settings
    /// Whether sampled columns over 4 KiB are tensors over the received message bytes
    /// (no copy; `SampleWire.decode`'s `adoptMessageBytes`).
    public var adoptsMessageBytes: Bool { settings.adoptMessageBytes }
    private let connections: Task<Void, Never>

    private struct Settings: Sendable {
        var host: String
        var port: Int
        var token: String?
        var tls: ReplayClientTLS?
        var tuning: ReplayConnectionTuning
        var adoptMessageBytes: Bool
        var transport: ReplayTransport
    }

    /// Which wire a client speaks.
    public enum ReplayTransport: String, Sendable, CaseIterable {
        /// gRPC over HTTP/2 (grpc-swift's NIO transport): any gRPC client can talk to it.
        case http2
        /// The same RPCs over `FramedClientTransport` to a server's framed port
        /// (`ReplayServiceHost(framedPort:)`, `loom-replay serve --framed-port`): no HTTP/2
        /// framing, message bytes sent from chunk storage and received into buffers of their
        /// own. Plaintext only.
        case framed
    }

    /// The wire this client speaks.
    public var transport: ReplayTransport { settings.transport }

    /// A client of the service at `host:port` (an IPv4 or IPv6 address or a DNS name),
    /// sending `authorization: Bearer <token>` with every call when `token` is set, over TLS
    /// verified against `tls`'s trust roots when `tls` is set (plaintext otherwise), with
    /// `tuning`'s HTTP/2 and socket settings.
    ///
    /// With `adoptMessageBytes` (default), sampled columns over 4 KiB (frames) are read-only
    /// tensors over the received message's bytes instead of copies; each keeps its whole
    /// response message's buffer alive (a 64-frame response: 1.8 MB) until the last such
    /// tensor dies. A consumer that keeps a few samples of many responses for long should
    /// pass false (one copy per column, memory proportional to what it keeps).
    public init(host: String = "127.0.0.1", port: Int, token: String? = nil, tls: ReplayClientTLS? = nil,
                tuning: ReplayConnectionTuning = .default, adoptMessageBytes: Bool = true,
                transport: ReplayTransport = .http2) throws {
        settings = Settings(host: host, port: port, token: token, tls: tls, tuning: tuning,
                            adoptMessageBytes: adoptMessageBytes, transport: transport)
        var md = Metadata()
        if let token { md.addString("Bearer \(token)", forKey: "authorization") }
        metadata = md
        var opts = CallOptions.defaults
        opts.maxRequestMessageBytes = ReplayServiceHost.maxMessageBytes
        opts.maxResponseMessageBytes = ReplayServiceHost.maxMessageBytes
        // Fail at once when the connection cannot be made instead of waiting for ever.
        opts.waitForReady = false
        options = opts
        if transport == .framed {
            guard tls == nil else {
                throw RPCError(code: .invalidArgument, message: "ReplayClient: the framed transport has no TLS; use transport: .http2 with tls")
            }
            let grpc = GRPCClient(transport: FramedClientTransport(host: host, port: port))
            self.grpc = grpc
            endpoint = "\(host):\(port) (framed)"
            connections = Task { try? await grpc.runConnections() }
            return
        }
        let target: any ResolvableTarget
        if host.split(separator: ".").count == 4 && host.allSatisfy({ $0.isNumber || $0 == "." }) {
            target = ResolvableTargets.IPv4(addresses: [SocketAddress.IPv4(host: host, port: port)])
        } else if host.contains(":") {
            target = ResolvableTargets.IPv6(addresses: [SocketAddress.IPv6(host: host, port: port)])
        } else {
            target = ResolvableTargets.DNS(host: host, port: port)
        }
        let config = HTTP2ClientTransport.Posix.Config.defaults { c in
            // How far the server may stream ahead of the reader is bounded by the Sample
            // calls themselves (`ReplaySamples`' in-flight budget, `ReplaySampler.stream`'s
            // bounded calls), so the window only has to keep large responses (a batch of
            // 256 frames is 7 MiB) from stalling on flow-control round trips: 2 MiB took
            // four WINDOW_UPDATE round trips per such batch.
            c.http2.maxFrameSize = tuning.maxFrameSize
            c.http2.targetWindowSize = tuning.targetWindowSize
            if !tuning.flushCoalescing { c.connection.flushCoalescing = nil }
            c.channelDebuggingCallbacks.onCreateTCPConnection = { tuning.configure($0) }
        }
        let http2 = try HTTP2ClientTransport.Posix(target: target, transportSecurity: tls?.transportSecurity ?? .plaintext,
                                                       config: config)
        let grpc = GRPCClient(transport: http2)
        self.grpc = grpc
        endpoint = "\(host):\(port) (\(tls == nil ? "plaintext" : "TLS"))"
        connections = Task { try? await grpc.runConnections() }
    }

    /// Another client of the same server with the same token, TLS, tuning and decoding: its own
    /// HTTP/2 connection (its own NIO event loop on both sides), so calls on it do not
    /// share one connection's event loop with this client's. Close it when done.
    public func connect() throws -> ReplayClient {
        try ReplayClient(host: settings.host, port: settings.port, token: settings.token, tls: settings.tls,
                         tuning: settings.tuning, adoptMessageBytes: settings.adoptMessageBytes, transport: settings.transport)
    }

    /// Stops the connection (in-flight calls finish first).
    public func close() async {
        grpc.beginGracefulShutdown()
        await connections.value
    }

    /// This client's call options with `deadline` as the gRPC call timeout (nil: none).
    func options(deadline: Duration?) -> CallOptions {
        var o = options
        if let deadline { o.timeout = deadline }
        return o
    }

    /// Runs one RPC; an `unavailable` error gets a message that names the endpoint and the
    /// likely causes, and a `deadlineExceeded` one names the call's `deadline` (when set).
    func call<T>(_ what: String, deadline: Duration? = nil, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as RPCError where error.code == .unavailable {
            let hint = settings.transport == .framed
                ? "is it running, and is this its --framed-port (not its HTTP/2 port)?"
                : "is it running, and do client and server agree on TLS? a TLS server needs ReplayClient(tls:), a plaintext one none"
            throw RPCError(code: .unavailable,
                           message: "\(what): cannot reach the replay service at \(endpoint) (\(hint)); transport:",
                           cause: error)
        } catch let error as RPCError where error.code == .deadlineExceeded && deadline != nil {
            throw RPCError(code: .deadlineExceeded,
                           message: "\(what): call deadline of \(deadline!) exceeded (\(error.message))", cause: error)
        }
    }

    /// Sends `requests` on one Insert stream; returns how many items the server inserted.
    /// `deadline`: gRPC call deadline (the whole call; nil = none); past it the call fails
    /// with `deadlineExceeded` and the server stops waiting for it.
    public func insert(_ requests: [Loom_Replay_InsertRequest], deadline: Duration? = nil) async throws -> UInt64 {
        try await call("insert", deadline: deadline) {
            try await grpc.clientStreaming(
                request: StreamingClientRequest<Loom_Replay_InsertRequest>(metadata: metadata) { writer in
                    for r in requests { try await writer.write(r) }
                },
                descriptor: Loom_Replay_ReplayService.Method.Insert.descriptor,
                serializer: InsertRequestSerializer(),
                deserializer: ProtobufDeserializer<Loom_Replay_InsertResponse>(),
                options: options(deadline: deadline)
            ) { try $0.message }.itemsInserted
        }
    }

    /// Opens an Insert stream to which messages are sent as they are ready (several in
    /// flight); `finish()` ends it and returns the number of items inserted. `deadline`:
    /// gRPC deadline of the whole stream (nil = none).
    public func openInsertStream(maxQueuedMessages: Int = 8, deadline: Duration? = nil) -> InsertStream {
        InsertStream(client: self, capacity: maxQueuedMessages, deadline: deadline)
    }

    /// Samples `count` items of `table` in batches of up to `batchSize` (0 = one batch),
    /// each batch waiting at most `timeout` for the rate limiter (nil = forever; sent as
    /// `timeout_ms`), the whole call at most `deadline` (gRPC call deadline; nil = none).
    /// Items come back with one chunk holding their trajectory.
    public func sample(table: String, count: Int, batchSize: Int = 0, timeout: Duration? = nil,
                       deadline: Duration? = nil) async throws -> [ReplaySample] {
        let all = SampleCollector()
        try await sample(table: table, count: count, batchSize: batchSize, timeout: timeout, deadline: deadline) { batch in
            all.append(batch)
            return true
        }
        return all.samples
    }

    /// Streams up to `count` samples of `table` in batches of up to `batchSize` (0 = one
    /// batch), calling `onBatch` with each decoded batch as it arrives; `onBatch` returns
    /// false to stop early (the call is then cancelled). Each batch waits at most `timeout`
    /// for the rate limiter (nil = forever); the whole call ends at `deadline` (gRPC call
    /// deadline, nil = none) with `deadlineExceeded`.
    ///
    /// Responses are decoded by `SampleBatchDeserializer` straight from the message bytes
    /// (columns over 4 KiB adopt them, others are copied once into tensor storage; see
    /// `init`'s `adoptMessageBytes`), on the task reading the stream.
    public func sample(table: String, count: Int, batchSize: Int = 0, timeout: Duration? = nil, deadline: Duration? = nil,
                       onBatch: @escaping @Sendable ([ReplaySample]) async throws -> Bool) async throws {
        var request = Loom_Replay_SampleRequest()
        request.table = table
        request.numSamples = Int64(count)
        request.flexibleBatchSize = Int64(batchSize)
        request.timeoutMs = timeout.map(Self.milliseconds) ?? 0
        let options = options(deadline: deadline)
        try await call("sample from '\(table)'", deadline: deadline) {
            try await grpc.serverStreaming(
                request: ClientRequest(message: request, metadata: metadata),
                descriptor: Loom_Replay_ReplayService.Method.Sample.descriptor,
                serializer: ProtobufSerializer<Loom_Replay_SampleRequest>(),
                deserializer: SampleBatchDeserializer(table: table, adoptMessageBytes: settings.adoptMessageBytes),
                options: options
            ) { response in
                for try await batch in response.messages {
                    if try await !onBatch(batch) { return }
                }
            }
        }
    }

    /// Runs one SampleStream call on `table` (Reverb's model: one long-lived stream per
    /// sampler worker). Before each request the call awaits `more()`, the number of further
    /// samples to ask for; 0 (or less) closes the request side, after which the server
    /// answers what was asked and ends the call. Responses of up to `flexibleBatchSize`
    /// items (0 = each request in one response) are decoded straight from the message bytes
    /// and passed to `onBatch` as they arrive. Each response waits at most `timeout` for the
    /// rate limiter (nil = forever); the whole call ends at `deadline` (gRPC call deadline,
    /// nil = none) with `deadlineExceeded`. Returns when the call ended.
    ///
    /// `more()` runs concurrently with `onBatch` and should wait until the consumer has room
    /// (one that never waits floods the call with requests). When the call fails, a `more()`
    /// still waiting is cancelled (its task is), so it must return promptly on cancellation.
    public func sampleStream(table: String, flexibleBatchSize: Int = 0, timeout: Duration? = nil, deadline: Duration? = nil,
                             more: @escaping @Sendable () async -> Int,
                             onBatch: @escaping @Sendable ([ReplaySample]) async throws -> Void) async throws {
        var template = Loom_Replay_SampleRequest()
        template.table = table
        template.flexibleBatchSize = Int64(flexibleBatchSize)
        template.timeoutMs = timeout.map(Self.milliseconds) ?? 0
        let base = template
        let request = StreamingClientRequest<Loom_Replay_SampleRequest>(metadata: metadata) { writer in
            while true {
                let n = await more()
                if n <= 0 || Task.isCancelled { return }
                var r = base
                r.numSamples = Int64(n)
                try await writer.write(r)
            }
        }
        let options = options(deadline: deadline)
        try await call("sample stream from '\(table)'", deadline: deadline) {
            try await grpc.bidirectionalStreaming(
                request: request,
                descriptor: Loom_Replay_ReplayService.Method.SampleStream.descriptor,
                serializer: ProtobufSerializer<Loom_Replay_SampleRequest>(),
                deserializer: SampleBatchDeserializer(table: table, adoptMessageBytes: settings.adoptMessageBytes),
                options: options
            ) { response in
                for try await batch in response.messages { try await onBatch(batch) }
            }
        }
    }

    /// Sets priorities of `updates` and deletes `deletes` in `table` (`deadline`: gRPC call
    /// deadline, nil = none).
    public func mutatePriorities(table: String, updates: [(key: UInt64, priority: Double)] = [], deletes: [UInt64] = [],
                                 deadline: Duration? = nil) async throws {
        var request = Loom_Replay_MutatePrioritiesRequest()
        request.table = table
        request.updates = updates.map { u in
            var kp = Loom_Replay_KeyWithPriority()
            kp.key = u.key
            kp.priority = u.priority
            return kp
        }
        request.deletes = deletes
        _ = try await call("mutate priorities of '\(table)'", deadline: deadline) {
            try await unary(request, Loom_Replay_ReplayService.Method.MutatePriorities.descriptor, Loom_Replay_MutatePrioritiesResponse.self, deadline: deadline)
        }
    }

    /// Empties `table` (`deadline`: gRPC call deadline, nil = none).
    public func reset(table: String, deadline: Duration? = nil) async throws {
        var request = Loom_Replay_ResetRequest()
        request.table = table
        _ = try await call("reset '\(table)'", deadline: deadline) {
            try await unary(request, Loom_Replay_ReplayService.Method.Reset.descriptor, Loom_Replay_ResetResponse.self, deadline: deadline)
        }
    }

    /// Sizes and counters of every table, in the server's config order (`deadline`: gRPC
    /// call deadline, nil = none).
    public func serverInfo(deadline: Duration? = nil) async throws -> [Loom_Replay_TableInfo] {
        try await call("server info", deadline: deadline) {
            try await unary(Loom_Replay_ServerInfoRequest(), Loom_Replay_ReplayService.Method.ServerInfo.descriptor, Loom_Replay_ServerInfoResponse.self, deadline: deadline).tables
        }
    }

    /// Asks the server to write a checkpoint; returns its directory (`deadline`: gRPC call
    /// deadline, nil = none).
    public func checkpoint(deadline: Duration? = nil) async throws -> String {
        try await call("checkpoint", deadline: deadline) {
            try await unary(Loom_Replay_CheckpointRequest(), Loom_Replay_ReplayService.Method.Checkpoint.descriptor, Loom_Replay_CheckpointResponse.self, deadline: deadline).path
        }
    }

    /// One unary call with this client's metadata and options.
    private func unary<Request: SwiftProtobuf.Message & Sendable, Response: SwiftProtobuf.Message & Sendable>(
        _ request: Request, _ descriptor: MethodDescriptor, _ response: Response.Type, deadline: Duration?
    ) async throws -> Response {
        try await grpc.unary(request: ClientRequest(message: request, metadata: metadata), descriptor: descriptor,
                             serializer: ProtobufSerializer<Request>(), deserializer: ProtobufDeserializer<Response>(),
                             options: options(deadline: deadline)) { try $0.message }
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        let c = d.components
        return Swift.max(1, c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000)
    }
}

/// Collects batches from the streaming `sample` (called serially by one RPC).
/// `@unchecked Sendable`: the Sample response handler calls `append` from one task, and
/// `samples` is read after the call returned.
private final class SampleCollector: @unchecked Sendable {
    var samples: [ReplaySample] = []
    func append(_ batch: [ReplaySample]) { samples.append(contentsOf: batch) }
}


/// The calls of a grpc-swift client that `ReplayClient` makes, whatever its transport
/// (`GRPCClient` conforms with its own methods).
public protocol ReplayCalls: Sendable {
    func unary<Request, Response, ReturnValue: Sendable>(
        request: ClientRequest<Request>, descriptor: MethodDescriptor,
        serializer: some MessageSerializer<Request>, deserializer: some MessageDeserializer<Response>,
        options: CallOptions,
        onResponse handleResponse: @Sendable @escaping (_ response: ClientResponse<Response>) async throws -> ReturnValue
    ) async throws -> ReturnValue
    func clientStreaming<Request, Response, ReturnValue: Sendable>(
        request: StreamingClientRequest<Request>, descriptor: MethodDescriptor,
        serializer: some MessageSerializer<Request>, deserializer: some MessageDeserializer<Response>,
        options: CallOptions,
        onResponse handleResponse: @Sendable @escaping (_ response: ClientResponse<Response>) async throws -> ReturnValue
    ) async throws -> ReturnValue
    func serverStreaming<Request, Response, ReturnValue: Sendable>(
        request: ClientRequest<Request>, descriptor: MethodDescriptor,
        serializer: some MessageSerializer<Request>, deserializer: some MessageDeserializer<Response>,
        options: CallOptions,
        onResponse handleResponse: @Sendable @escaping (_ response: StreamingClientResponse<Response>) async throws -> ReturnValue
    ) async throws -> ReturnValue
    func bidirectionalStreaming<Request, Response, ReturnValue: Sendable>(
        request: StreamingClientRequest<Request>, descriptor: MethodDescriptor,
        serializer: some MessageSerializer<Request>, deserializer: some MessageDeserializer<Response>,
        options: CallOptions,
        onResponse handleResponse: @Sendable @escaping (_ response: StreamingClientResponse<Response>) async throws -> ReturnValue
    ) async throws -> ReturnValue
    func runConnections() async throws
    func beginGracefulShutdown()
}

extension GRPCClient: ReplayCalls {}
