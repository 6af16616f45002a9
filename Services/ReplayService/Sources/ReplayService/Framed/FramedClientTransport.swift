#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GRPCCore
import Synchronization

/// The client side of the framed transport (see `FramedServerTransport`): one TCP connection,
/// made on first use and again after it is lost; calls on it are multiplexed by stream id.
///
/// A call made while the server cannot be reached fails at once with `unavailable` (the
/// message names the address), like the HTTP/2 transport with `waitForReady = false`.
public final class FramedClientTransport: ClientTransport, Sendable {
    public typealias Bytes = FramedBytes

    public let retryThrottle: RetryThrottle? = nil
    let host: String
    let port: Int
    let connectTimeout: Duration

    private struct State {
        var connection: FramedConnection?
        var calls: [UInt32: ClientCall] = [:]
        var nextStream: UInt32 = 1
        var shuttingDown = false
        /// `connect()` waiting for `shuttingDown && calls.isEmpty`.
        var stopped: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())
    /// Serialises connection attempts (a blocking connect and preface exchange).
    private let connecting = Mutex(())

    /// A transport to `host:port` (a framed port of `ReplayServiceHost`).
    public init(host: String = "127.0.0.1", port: Int, connectTimeout: Duration = .seconds(5)) {
        self.host = host
        self.port = port
        self.connectTimeout = connectTimeout
    }

    /// Connects (a failure is not thrown: calls report it), then returns once
    /// `beginGracefulShutdown` was called and the open calls have ended.
    public func connect() async throws {
        _ = try? connection()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.shuttingDown && s.calls.isEmpty { return true }
                s.stopped = c
                return false
            }
            if now { c.resume() }
        }
        let c = state.withLock { s in
            defer { s.connection = nil }
            return s.connection
        }
        c?.close(RPCError(code: .unavailable, message: "framed transport: the client shut down"))
    }

    public func beginGracefulShutdown() {
        let resume = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.shuttingDown = true
            if s.calls.isEmpty {
                defer { s.stopped = nil }
                return s.stopped
            }
            return nil
        }
        resume?.resume()
    }

    public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? { nil }

    /// The live connection, connecting first when there is none.
    func connection() throws -> FramedConnection {
        if let c = state.withLock({ $0.connection }) { return c }
        return try connecting.withLock { _ in
            if let c = state.withLock({ $0.connection }) { return c }
            let endpoint = "\(host):\(port)"
            let fd = try FramedSocket.connect(host: host, port: port, timeout: connectTimeout)
            do {
                try FramedSocket.exchangePreface(fd, peer: endpoint, timeout: connectTimeout)
            } catch {
                Glibc.close(fd)
                throw error
            }
            let c = FramedConnection(fd: fd, peer: endpoint)
            state.withLock { $0.connection = c }
            c.start(onFrame: { [weak self] header, payload in
                self?.received(header, payload, on: c)
            }, onClose: { [weak self] error in
                self?.lost(c, error)
            })
            return c
        }
    }

    private func received(_ header: FramedWire.Header, _ payload: FramedBytes, on connection: FramedConnection) {
        guard let call = state.withLock({ $0.calls[header.stream] }) else { return }
        switch header.kind {
        case .metadata:
            do { call.inbound.yield(.metadata(try FramedWire.decodeMetadata(payload))) } catch { call.inbound.finish(throwing: error) }
        case .message:
            call.inbound.yield(.message(payload))
        case .status:
            call.statusReceived()
            do {
                let (status, trailers) = try FramedWire.decodeStatus(payload)
                call.inbound.yield(.status(status, trailers))
                call.inbound.finish()
            } catch {
                call.inbound.finish(throwing: error)
            }
        case .open, .end, .cancel:
            connection.close(RPCError(code: .internalError, message: "framed transport: the server sent a \(header.kind) frame"))
        }
    }

    private func lost(_ connection: FramedConnection, _ error: RPCError) {
        let calls = state.withLock { s -> [ClientCall] in
            if s.connection === connection { s.connection = nil }
            return s.calls.values.filter { $0.connection === connection }
        }
        for call in calls { call.inbound.finish(throwing: error) }
    }

    public func withStream<T: Sendable>(
        descriptor: MethodDescriptor,
        options: CallOptions,
        _ closure: (_ stream: RPCStream<Inbound, Outbound>, _ context: ClientContext) async throws -> T
    ) async throws -> T {
        if state.withLock({ $0.shuttingDown }) {
            throw RPCError(code: .failedPrecondition, message: "framed transport: the client is shutting down")
        }
        let connection = try connection()
        let call = state.withLock { s -> ClientCall in
            let id = s.nextStream
            s.nextStream &+= 2
            let call = ClientCall(connection: connection, stream: id, descriptor: descriptor)
            s.calls[id] = call
            return call
        }
        defer { finished(call) }
        // A connection lost after `connection()` returned but before the call was registered
        // was not seen by `lost`: end the call here (`lost` runs after `isClosed` is set).
        if connection.isClosed {
            call.inbound.finish(throwing: RPCError(code: .unavailable, message: "framed transport: the connection to \(connection.peer) was lost"))
        }
        let stream = RPCStream(descriptor: descriptor,
                               inbound: RPCAsyncSequence(wrapping: call.inboundStream),
                               outbound: RPCWriter.Closable(wrapping: ClientCallWriter(call: call)))
        let context = ClientContext(descriptor: descriptor, remotePeer: connection.peer, localPeer: "framed-client")
        return try await closure(stream, context)
    }

    /// Removes a call; one that ended before its status tells the server to cancel it.
    private func finished(_ call: ClientCall) {
        if !call.hasStatus { call.connection.sendNow(.cancel, stream: call.stream) }
        call.inbound.finish()
        let resume = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.calls.removeValue(forKey: call.stream)
            guard s.shuttingDown && s.calls.isEmpty else { return nil }
            defer { s.stopped = nil }
            return s.stopped
        }
        resume?.resume()
    }
}

/// One call on the client: its response stream and whether the server's status arrived.
final class ClientCall: Sendable {
    let connection: FramedConnection
    let stream: UInt32
    let descriptor: MethodDescriptor
    let inboundStream: AsyncThrowingStream<RPCResponsePart<FramedBytes>, any Error>
    let inbound: AsyncThrowingStream<RPCResponsePart<FramedBytes>, any Error>.Continuation
    private let status = Atomic<Bool>(false)

    init(connection: FramedConnection, stream: UInt32, descriptor: MethodDescriptor) {
        self.connection = connection
        self.stream = stream
        self.descriptor = descriptor
        (inboundStream, inbound) = AsyncThrowingStream.makeStream()
    }

    func statusReceived() { status.store(true, ordering: .releasing) }
    var hasStatus: Bool { status.load(ordering: .acquiring) }
}

/// The request side of a client call: the first part (metadata) opens the stream.
struct ClientCallWriter: ClosableRPCWriterProtocol {
    typealias Element = RPCRequestPart<FramedBytes>
    let call: ClientCall

    func write(_ element: Element) async throws {
        switch element {
        case .metadata(let m):
            try await call.connection.send(.open, stream: call.stream, FramedWire.openPayload(call.descriptor, m))
        case .message(let b):
            try await call.connection.send(.message, stream: call.stream, b)
        }
    }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        for e in elements { try await write(e) }
    }

    func finish() async { call.connection.sendNow(.end, stream: call.stream) }

    func finish(throwing error: any Error) async {
        if !call.hasStatus { call.connection.sendNow(.cancel, stream: call.stream) }
    }
}
