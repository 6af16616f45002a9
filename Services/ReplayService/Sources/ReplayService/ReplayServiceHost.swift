import GRPCCore
import GRPCNIOTransportHTTP2
import ReplayStorage

/// A running gRPC server for a `ReplayServer`: binds `host:port` (127.0.0.1 and a free
/// port by default), optionally requires a bearer token, and serves until `shutdown()`.
///
/// Usage: `let host = ReplayServiceHost(replay: server)`, run `try await host.serve()` in a
/// task, read `try await host.port`, and call `host.shutdown()` to stop.
public final class ReplayServiceHost: Sendable {
    /// The tables served.
    public let replay: ReplayServer
    /// The underlying grpc-swift server.
    public let server: GRPCServer<HTTP2ServerTransport.Posix>

    /// A server for `replay` on `host:port` (port 0 picks a free port); with a `token`,
    /// calls without `authorization: Bearer <token>` are refused; `checkpointRoot` enables
    /// the `Checkpoint` RPC.
    public init(replay: ReplayServer, host: String = "127.0.0.1", port: Int = 0, token: String? = nil,
                checkpointRoot: String? = nil) {
        self.replay = replay
        let transport = HTTP2ServerTransport.Posix(address: .ipv4(host: host, port: port), transportSecurity: .plaintext)
        var interceptors: [any ServerInterceptor] = []
        if let token { interceptors.append(BearerTokenInterceptor(token: token)) }
        server = GRPCServer(transport: transport,
                            services: [ReplayGRPCService(replay: replay, checkpointRoot: checkpointRoot)],
                            interceptors: interceptors)
    }

    /// Serves until `shutdown()`; throws when the address cannot be bound.
    public func serve() async throws { try await server.serve() }

    /// The bound port, once listening (throws when binding failed or the server stopped).
    public var port: Int {
        get async throws {
            let address = try await server.transport.listeningAddress
            guard let ipv4 = address.ipv4 else {
                throw RPCError(code: .internalError, message: "listening address \(address) is not IPv4")
            }
            return ipv4.port
        }
    }

    /// Closes the replay tables (blocked inserts and samples end with `cancelled`) and
    /// stops the gRPC server once in-flight RPCs finish.
    public func shutdown() {
        replay.close()
        server.beginGracefulShutdown()
    }
}
