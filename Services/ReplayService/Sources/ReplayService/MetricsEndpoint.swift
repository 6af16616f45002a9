import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A minimal HTTP/1.1 server for Prometheus: `GET /metrics` answers the scrape body of a
/// `ReplayMetrics` (`text/plain; version=0.0.4`); other paths get 404, other methods 405.
///
/// Usage: `let endpoint = MetricsEndpoint(metrics: m, host: "127.0.0.1", port: 0)`,
/// `let port = try await endpoint.start()`, later `try await endpoint.stop()`.
public final class MetricsEndpoint: Sendable {
    /// The metrics served.
    public let metrics: ReplayMetrics
    /// The address bound.
    public let host: String
    /// The port asked for (0 picks a free one; `start()` returns the bound one).
    public let requestedPort: Int
    private let channel = Mutex<(any Channel)?>(nil)

    /// An endpoint for `metrics` on `host:port`; nothing is bound before `start()`.
    public init(metrics: ReplayMetrics, host: String = "127.0.0.1", port: Int = 0) {
        self.metrics = metrics
        self.host = host
        requestedPort = port
    }

    /// Binds and starts serving; returns the bound port. Throws when the address cannot
    /// be bound.
    @discardableResult
    public func start() async throws -> Int {
        let metrics = self.metrics
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(metrics: metrics))
                }
            }
        let bound = try await bootstrap.bind(host: host, port: requestedPort).get()
        channel.withLock { $0 = bound }
        guard let port = bound.localAddress?.port else {
            try? await bound.close()
            throw MetricsEndpointError(message: "metrics endpoint bound to \(host):\(requestedPort) has no local port")
        }
        return port
    }

    /// Stops listening (open scrapes finish).
    public func stop() async throws {
        let ch = channel.withLock { c -> (any Channel)? in
            defer { c = nil }
            return c
        }
        try await ch?.close()
    }
}

/// Why the metrics endpoint could not start.
public struct MetricsEndpointError: Error, CustomStringConvertible {
    /// What went wrong.
    public let message: String
    public var description: String { message }
}

/// Answers one request at a time on one connection (HTTP/1.1 keep-alive honoured).
private final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: ReplayMetrics
    private var head: HTTPRequestHead?

    init(metrics: ReplayMetrics) { self.metrics = metrics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body:
            break
        case .end:
            guard let h = head else { return }
            head = nil
            respond(context: context, to: h)
        }
    }

    private func respond(context: ChannelHandlerContext, to request: HTTPRequestHead) {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        let status: HTTPResponseStatus
        let body: String
        var contentType = "text/plain; charset=utf-8"
        if request.method != .GET && request.method != .HEAD {
            status = .methodNotAllowed
            body = "method \(request.method) not allowed; expected GET /metrics\n"
        } else if path == "/metrics" {
            status = .ok
            body = metrics.scrape()
            contentType = "text/plain; version=0.0.4; charset=utf-8"
        } else {
            status = .notFound
            body = "no such path \(path); expected GET /metrics\n"
        }
        let bytes = Array(body.utf8)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(bytes.count))
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
                      promise: nil)
        if request.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
