import GRPCCore
import GRPCNIOTransportHTTP2
import ReplayStorage

/// A running gRPC server for a `ReplayServer`: binds `host:port` (127.0.0.1 and a free
/// port by default), optionally requires a bearer token and TLS, counts calls in
/// `metrics`, and serves until `shutdown()`.
///
/// Usage: `let host = ReplayServiceHost(replay: server)`, run `try await host.serve()` in a
/// task, read `try await host.port`, and call `host.shutdown()` to stop.
public final class ReplayServiceHost: Sendable {
    /// The tables served.
    public let replay: ReplayServer
    /// The underlying grpc-swift server.
    public let server: GRPCServer<HTTP2ServerTransport.Posix>
    /// The instruments the service updates (nil when none were given).
    public let metrics: ReplayMetrics?
    /// The service (its `closer` ends open streams at shutdown).
    public let service: ReplayGRPCService
    /// The same service over the framed transport (`FramedServerTransport`), when `framedPort`
    /// was given: Loom's clients (`ReplayClient(transport: .framed)`) sample without gRPC's
    /// HTTP/2 copies. Plaintext only; same token.
    public let framedServer: GRPCServer<FramedServerTransport>?

    /// Largest message accepted or sent (256 MiB): a batch of 256 frames of 84x84x4 bytes is
    /// 7 MiB, over gRPC's 4 MiB default.
    public static let maxMessageBytes = 256 << 20

    /// A server for `replay` on `host:port` (port 0 picks a free port); with a `token`,
    /// calls without `authorization: Bearer <token>` are refused; `checkpointRoot` enables
    /// the `Checkpoint` RPC; `tls` serves TLS only (plaintext clients are refused);
    /// `metrics` is updated on every insert and sample; `tuning`: HTTP/2 and socket settings;
    /// `framedPort` (0: a free port) also serves the service over `FramedServerTransport`
    /// on the same host, with the same token (plaintext only: giving it with `tls` is a
    /// programming error and stops the process with a message).
    public init(replay: ReplayServer, host: String = "127.0.0.1", port: Int = 0, token: String? = nil,
                checkpointRoot: String? = nil, tls: ReplayServerTLS? = nil, metrics: ReplayMetrics? = nil,
                tuning: ReplayConnectionTuning = .default, framedPort: Int? = nil) {
        self.replay = replay
        self.metrics = metrics
        let config = HTTP2ServerTransport.Posix.Config.defaults { c in
            c.rpc.maxRequestPayloadSize = Self.maxMessageBytes
            // Larger frames and windows: fewer flow-control round trips for frame payloads.
            c.http2.maxFrameSize = tuning.maxFrameSize
            c.http2.targetWindowSize = tuning.targetWindowSize
            if !tuning.flushCoalescing { c.connection.flushCoalescing = nil }
            c.channelDebuggingCallbacks.onAcceptTCPConnection = { tuning.configure($0) }
        }
        let address: GRPCNIOTransportCore.SocketAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
        let transport = HTTP2ServerTransport.Posix(address: address,
                                                   transportSecurity: tls?.transportSecurity ?? .plaintext,
                                                   config: config)
        var interceptors: [any ServerInterceptor] = []
        if let token { interceptors.append(BearerTokenInterceptor(token: token)) }
        let service = ReplayGRPCService(replay: replay, checkpointRoot: checkpointRoot, metrics: metrics)
        self.service = service
        server = GRPCServer(transport: transport, services: [service], interceptors: interceptors)
        if let framedPort {
            precondition(tls == nil, "ReplayServiceHost: the framed transport has no TLS; serve it without tls or not at all")
            framedServer = GRPCServer(transport: FramedServerTransport(host: host, port: framedPort), services: [service],
                                      interceptors: interceptors)
        } else {
            framedServer = nil
        }
    }

    /// Serves until `shutdown()`; throws when an address cannot be bound.
    public func serve() async throws {
        guard let framedServer else { return try await server.serve() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.server.serve() }
            group.addTask { try await framedServer.serve() }
            do {
                try await group.waitForAll()
            } catch {
                // One failed to bind: stop the other too.
                self.shutdown()
                throw error
            }
        }
    }

    /// The framed transport's bound port, once listening (nil without `framedPort`).
    public var framedPort: Int? {
        get async throws {
            guard let framedServer else { return nil }
            return try await framedServer.transport.port
        }
    }

    /// The bound port, once listening (throws when binding failed or the server stopped).
    public var port: Int {
        get async throws {
            let address = try await server.transport.listeningAddress
            if let ipv4 = address.ipv4 { return ipv4.port }
            if let ipv6 = address.ipv6 { return ipv6.port }
            throw RPCError(code: .internalError, message: "listening address \(address) is neither IPv4 nor IPv6")
        }
    }

    /// Closes the replay tables (blocked inserts and samples end with `cancelled`), ends
    /// the open SampleStream and InsertStream calls with `cancelled`, and stops the gRPC
    /// server once in-flight RPCs finish.
    public func shutdown() {
        replay.close()
        service.closer.close()
        server.beginGracefulShutdown()
        framedServer?.beginGracefulShutdown()
    }
}
