#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GRPCCore
import Synchronization

/// A grpc-swift `ServerTransport` over plain TCP with Loom's own framing (`FramedWire`)
/// instead of HTTP/2: the same services, interceptors, deadlines (the `grpc-timeout`
/// metadata) and status codes, but messages go to the socket from where they are and come
/// back in buffers of their own (see `FramedBytes`), so a sampled frame is not copied into
/// HTTP/2 frames and joined again on the other side.
///
/// Only clients built on `FramedClientTransport` speak it; other gRPC clients use the
/// HTTP/2 port. No TLS: serve it on loopback or a trusted network (a bearer token still
/// applies, through the same interceptor).
///
/// Each connection has a reader and a writer thread; each call runs in the task group of
/// `listen`. Graceful shutdown stops accepting, lets running calls finish, then closes the
/// connections.
public final class FramedServerTransport: ServerTransport, Sendable {
    public typealias Bytes = FramedBytes
    public typealias Inbound = RPCAsyncSequence<RPCRequestPart<Bytes>, any Error>
    public typealias Outbound = RPCWriter<RPCResponsePart<Bytes>>.Closable

    let host: String
    let requestedPort: Int

    private struct NewStream: Sendable {
        var stream: RPCStream<Inbound, Outbound>
        var call: ServerCall
        var peer: String
    }

    private struct State {
        var listenFD: Int32 = -1
        var port: Result<Int, RPCError>?
        var portWaiters: [CheckedContinuation<Int, any Error>] = []
        var connections: [ObjectIdentifier: FramedConnection] = [:]
        var shutdown = false
    }

    private let state = Mutex(State())
    private let newStreams: AsyncStream<NewStream>
    private let newStreamsContinuation: AsyncStream<NewStream>.Continuation

    /// A transport that will listen on `host:port` (port 0: a free port, see `port`).
    public init(host: String = "127.0.0.1", port: Int = 0) {
        self.host = host
        requestedPort = port
        (newStreams, newStreamsContinuation) = AsyncStream.makeStream()
    }

    /// The bound port, once `listen` has bound it (throws when binding failed).
    public var port: Int {
        get async throws {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int, any Error>) in
                let ready: Result<Int, RPCError>? = state.withLock { s in
                    if let p = s.port { return p }
                    s.portWaiters.append(c)
                    return nil
                }
                if let ready { c.resume(with: ready.mapError { $0 as any Error }) }
            }
        }
    }

    private func setPort(_ result: Result<Int, RPCError>) {
        let waiters = state.withLock { s in
            s.port = result
            defer { s.portWaiters = [] }
            return s.portWaiters
        }
        for w in waiters { w.resume(with: result.mapError { $0 as any Error }) }
    }

    public func listen(
        streamHandler: @escaping @Sendable (_ stream: RPCStream<Inbound, Outbound>, _ context: ServerContext) async -> Void
    ) async throws {
        let bound: (fd: Int32, port: Int)
        do {
            bound = try FramedSocket.listen(host: host, port: requestedPort)
        } catch {
            let e = error as? RPCError ?? RPCError(code: .unavailable, message: "\(error)")
            setPort(.failure(e))
            newStreamsContinuation.finish()
            throw e
        }
        let alreadyShutDown = state.withLock { s in
            s.listenFD = bound.fd
            return s.shutdown
        }
        setPort(.success(bound.port))
        if alreadyShutDown { stopListening() }
        let acceptor = Thread { [self] in acceptLoop(bound.fd) }
        acceptor.name = "loom-framed-accept"
        acceptor.start()

        await withDiscardingTaskGroup { group in
            for await new in newStreams {
                group.addTask {
                    await withServerContextRPCCancellationHandle { handle in
                        new.call.attach(handle)
                        let context = ServerContext(descriptor: new.stream.descriptor, remotePeer: new.peer,
                                                    localPeer: "\(self.host):\(bound.port)", cancellation: handle)
                        await streamHandler(new.stream, context)
                    }
                }
            }
        }
        // Every call has finished: close the connections.
        let open = state.withLock { s in
            defer { s.connections = [:] }
            return Array(s.connections.values)
        }
        // Each sends its queued frames (the calls' last statuses) first.
        for c in open { c.closeWhenFlushed() }
    }

    public func beginGracefulShutdown() {
        state.withLock { $0.shutdown = true }
        stopListening()
        newStreamsContinuation.finish()
    }

    private func stopListening() {
        let fd = state.withLock { s -> Int32 in
            defer { s.listenFD = -1 }
            return s.listenFD
        }
        // Wakes the accept thread (accept fails with EINVAL), which closes the socket.
        if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private func acceptLoop(_ fd: Int32) {
        defer { Glibc.close(fd) }
        while true {
            var storage = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let client = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(fd, $0, &len) }
            }
            if client >= 0 { _ = fcntl(client, F_SETFD, FD_CLOEXEC) }
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE { continue }
                return
            }
            if state.withLock({ $0.shutdown }) {
                Glibc.close(client)
                return
            }
            FramedSocket.configure(client)
            let peer = Self.describe(storage)
            // The preface exchange reads from the client: do it off the accept thread.
            let setup = Thread { [self] in
                do {
                    try FramedSocket.exchangePreface(client, peer: peer, timeout: .seconds(10))
                } catch {
                    Glibc.close(client)
                    return
                }
                serve(FramedConnection(fd: client, peer: peer))
            }
            setup.start()
        }
    }

    static func describe(_ s: sockaddr_storage) -> String {
        var s = s
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let len = socklen_t(s.ss_family == sa_family_t(AF_INET6) ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafePointer(to: &s) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, len, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
            }
        }
        let name = rc == 0 ? String(cString: host) : "?"
        return "\(name):\(FramedSocket.boundPort(s))"
    }

    /// Routes one connection's frames to its calls.
    private func serve(_ connection: FramedConnection) {
        let calls = CallTable()
        let id = ObjectIdentifier(connection)
        let accepted = state.withLock { s -> Bool in
            if s.shutdown { return false }
            s.connections[id] = connection
            return true
        }
        guard accepted else {
            // Never started: no thread owns the socket yet.
            Glibc.close(connection.fd)
            return
        }
        connection.start(onFrame: { [weak self] header, payload in
            switch header.kind {
            case .open:
                guard let self else { return }
                let call = ServerCall(connection: connection, stream: header.stream)
                do {
                    let (service, method, metadata) = try FramedWire.decodeOpen(payload)
                    call.inbound.yield(.metadata(metadata))
                    calls.table.withLock { $0[header.stream] = call }
                    call.onDone = { calls.table.withLock { _ = $0.removeValue(forKey: header.stream) } }
                    let stream = RPCStream(descriptor: MethodDescriptor(fullyQualifiedService: service, method: method),
                                           inbound: RPCAsyncSequence(wrapping: call.inboundStream),
                                           outbound: RPCWriter.Closable(wrapping: ServerCallWriter(call: call)))
                    if case .terminated = self.newStreamsContinuation.yield(NewStream(stream: stream, call: call, peer: connection.peer)) {
                        call.reject(Status(code: .unavailable, message: "the server is shutting down"))
                    }
                } catch {
                    call.reject(FramedWire.status(for: error))
                }
            case .message:
                calls.table.withLock { $0[header.stream] }?.inbound.yield(.message(payload))
            case .end:
                calls.table.withLock { $0[header.stream] }?.inbound.finish()
            case .cancel:
                calls.table.withLock { $0[header.stream] }?.cancel(RPCError(code: .cancelled, message: "the client cancelled the call"))
            case .metadata, .status:
                connection.close(RPCError(code: .internalError, message: "framed transport: a client sent a \(header.kind) frame"))
            }
        }, onClose: { [weak self] error in
            let open = calls.table.withLock { c in
                defer { c = [:] }
                return Array(c.values)
            }
            for call in open { call.cancel(RPCError(code: .cancelled, message: "the client's connection closed (\(error.message))")) }
            _ = self?.state.withLock { $0.connections.removeValue(forKey: id) }
        })
    }
}

/// A connection's open calls by stream id.
final class CallTable: Sendable {
    let table = Mutex<[UInt32: ServerCall]>([:])
}

/// One call on the server: its request stream, its cancellation handle, and whether its
/// status has been sent.
final class ServerCall: Sendable {
    let connection: FramedConnection
    let stream: UInt32
    let inboundStream: AsyncThrowingStream<RPCRequestPart<FramedBytes>, any Error>
    let inbound: AsyncThrowingStream<RPCRequestPart<FramedBytes>, any Error>.Continuation

    private struct State {
        var handle: ServerContext.RPCCancellationHandle?
        var cancelled = false
        var statusSent = false
        var onDone: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())

    init(connection: FramedConnection, stream: UInt32) {
        self.connection = connection
        self.stream = stream
        (inboundStream, inbound) = AsyncThrowingStream.makeStream()
    }

    var onDone: (@Sendable () -> Void)? {
        get { state.withLock { $0.onDone } }
        set { state.withLock { $0.onDone = newValue } }
    }

    func attach(_ handle: ServerContext.RPCCancellationHandle) {
        let cancelNow = state.withLock { s in
            s.handle = handle
            return s.cancelled
        }
        if cancelNow { handle.cancel() }
    }

    func cancel(_ error: RPCError) {
        let handle = state.withLock { s in
            s.cancelled = true
            return s.handle
        }
        inbound.finish(throwing: error)
        handle?.cancel()
    }

    /// Marks the status sent; false when it already was.
    func markStatusSent() -> Bool {
        let (first, done) = state.withLock { s -> (Bool, (@Sendable () -> Void)?) in
            if s.statusSent { return (false, nil) }
            s.statusSent = true
            defer { s.onDone = nil }
            return (true, s.onDone)
        }
        done?()
        return first
    }

    /// Ends a call that never reached a handler.
    func reject(_ status: Status) {
        inbound.finish()
        if markStatusSent() { connection.sendNow(.status, stream: stream, FramedWire.statusPayload(status, [:])) }
    }
}

/// The response side of a server call.
struct ServerCallWriter: ClosableRPCWriterProtocol {
    typealias Element = RPCResponsePart<FramedBytes>
    let call: ServerCall

    func write(_ element: Element) async throws {
        switch element {
        case .metadata(let m):
            try await call.connection.send(.metadata, stream: call.stream, FramedWire.metadataPayload(m))
        case .message(let b):
            try await call.connection.send(.message, stream: call.stream, b)
        case .status(let s, let trailers):
            guard call.markStatusSent() else { return }
            try await call.connection.send(.status, stream: call.stream, FramedWire.statusPayload(s, trailers))
        }
    }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        for e in elements { try await write(e) }
    }

    func finish() async {
        if call.markStatusSent() {
            call.connection.sendNow(.status, stream: call.stream,
                                    FramedWire.statusPayload(Status(code: .internalError, message: "the server ended the call without a status"), [:]))
        }
    }

    func finish(throwing error: any Error) async {
        if call.markStatusSent() {
            call.connection.sendNow(.status, stream: call.stream, FramedWire.statusPayload(FramedWire.status(for: error), [:]))
        }
    }
}
