#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GRPCCore

/// The framed transport's wire: after an 8-byte preface each way (`preface`), frames of a
/// 16-byte header — stream id (UInt32), kind (UInt8), three zero bytes, payload length
/// (UInt64), all little-endian — followed by the payload.
///
/// Kinds (`FrameKind`): `open` (client: the method path `/service/method` and the request
/// metadata), `message` (either way: one serialized message), `end` (client: no more
/// requests), `cancel` (client: the call is abandoned), `metadata` (server: the response
/// metadata), `status` (server: code, message and trailers; the call's last frame).
/// Metadata is a count followed by (kind: 0 string / 1 binary, key, value) entries, strings
/// and byte values as a UInt32 length and the bytes.
enum FramedWire {
    /// Sent first by both sides; a peer that answers anything else is not a framed server.
    static let preface: [UInt8] = Array("LOOMRPC1".utf8)
    static let headerBytes = 16
    /// Largest payload accepted (a message of `ReplayServiceHost.maxMessageBytes` plus room).
    static let maxPayload = (256 << 20) + 4096

    enum FrameKind: UInt8 {
        case open = 1, message, end, cancel, metadata, status
    }

    struct Header {
        var stream: UInt32
        var kind: FrameKind
        var length: Int
    }

    static func writeHeader(_ h: Header, to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: h.stream.littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: UInt32(h.kind.rawValue).littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: UInt64(h.length).littleEndian, toByteOffset: 8, as: UInt64.self)
    }

    static func readHeader(_ p: UnsafeRawPointer) throws -> Header {
        let stream = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let kindWord = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let length = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard kindWord <= 0xFF, let kind = FrameKind(rawValue: UInt8(kindWord)) else {
            throw RPCError(code: .internalError, message: "framed transport: unknown frame kind \(kindWord) on stream \(stream)")
        }
        guard length <= UInt64(maxPayload) else {
            throw RPCError(code: .resourceExhausted,
                           message: "framed transport: frame of \(length) bytes on stream \(stream), at most \(maxPayload) accepted")
        }
        return Header(stream: stream, kind: kind, length: Int(length))
    }

    // MARK: Payload encoding (open, metadata, status)

    struct Encoder {
        var bytes: [UInt8] = []
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        mutating func string(_ s: String) { let u = Array(s.utf8); u32(UInt32(u.count)); bytes += u }
        mutating func blob(_ b: [UInt8]) { u32(UInt32(b.count)); bytes += b }
        mutating func metadata(_ m: Metadata) {
            u32(UInt32(m.count))
            for (key, value) in m {
                switch value {
                case .string(let s): bytes.append(0); string(key); string(s)
                case .binary(let b): bytes.append(1); string(key); blob(b)
                }
            }
        }
        var framed: FramedBytes { FramedBytes(bytes) }
    }

    struct Decoder {
        let bytes: UnsafeRawBufferPointer
        var at = 0
        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        static func malformed(_ what: String) -> RPCError {
            RPCError(code: .internalError, message: "framed transport: malformed \(what) frame")
        }

        mutating func u8(_ what: String) throws -> UInt8 {
            guard at < bytes.count else { throw Self.malformed(what) }
            defer { at += 1 }
            return bytes[at]
        }
        mutating func u32(_ what: String) throws -> UInt32 {
            guard bytes.count - at >= 4 else { throw Self.malformed(what) }
            defer { at += 4 }
            return UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self))
        }
        mutating func blob(_ what: String) throws -> [UInt8] {
            let n = Int(try u32(what))
            guard bytes.count - at >= n else { throw Self.malformed(what) }
            defer { at += n }
            return Array(bytes[at..<(at + n)])
        }
        mutating func string(_ what: String) throws -> String { String(decoding: try blob(what), as: UTF8.self) }
        mutating func metadata(_ what: String) throws -> Metadata {
            var m = Metadata()
            let n = try u32(what)
            guard Int(n) <= bytes.count else { throw Self.malformed(what) }
            for _ in 0..<n {
                let kind = try u8(what)
                let key = try string(what)
                switch kind {
                case 0: m.addString(try string(what), forKey: key)
                case 1: m.addBinary(try blob(what), forKey: key)
                default: throw Self.malformed(what)
                }
            }
            return m
        }
    }

    static func openPayload(_ descriptor: MethodDescriptor, _ metadata: Metadata) -> FramedBytes {
        var e = Encoder()
        e.string(descriptor.service.fullyQualifiedService)
        e.string(descriptor.method)
        e.metadata(metadata)
        return e.framed
    }

    static func statusPayload(_ status: Status, _ trailers: Metadata) -> FramedBytes {
        var e = Encoder()
        e.u32(UInt32(status.code.rawValue))
        e.string(status.message)
        e.metadata(trailers)
        return e.framed
    }

    static func metadataPayload(_ metadata: Metadata) -> FramedBytes {
        var e = Encoder()
        e.metadata(metadata)
        return e.framed
    }

    static func decodeOpen(_ b: FramedBytes) throws -> (service: String, method: String, metadata: Metadata) {
        try b.withUnsafeBytes { raw in
            var d = Decoder(raw)
            return (try d.string("open"), try d.string("open"), try d.metadata("open"))
        }
    }

    static func decodeStatus(_ b: FramedBytes) throws -> (Status, Metadata) {
        try b.withUnsafeBytes { raw in
            var d = Decoder(raw)
            let code = Status.Code(rawValue: Int(try d.u32("status"))) ?? .unknown
            let message = try d.string("status")
            return (Status(code: code, message: message), try d.metadata("status"))
        }
    }

    static func decodeMetadata(_ b: FramedBytes) throws -> Metadata {
        try b.withUnsafeBytes { raw in
            var d = Decoder(raw)
            return try d.metadata("metadata")
        }
    }

    /// The status a server sends for a handler's `error`.
    static func status(for error: any Error) -> Status {
        if let e = error as? RPCError { return Status(code: Status.Code(e.code), message: e.message) }
        if let e = error as? any RPCErrorConvertible { return Status(code: Status.Code(e.rpcErrorCode), message: e.rpcErrorMessage) }
        return Status(code: .unknown, message: "\(error)")
    }
}

/// One TCP connection of the framed transport: a reader thread that reads frames (large
/// payloads straight into a buffer of their exact size) and hands them to `onFrame`, and a
/// writer thread that sends queued frames with `writev`, taking message bytes from where
/// they are (`FramedBytes`' parts) without joining them.
///
/// Senders wait (asynchronously) while more than `maxQueuedBytes` are queued. When the
/// socket fails or the peer closes, `onClose` is called once and later sends throw
/// `unavailable`.
final class FramedConnection: @unchecked Sendable {
    let fd: Int32
    /// `host:port` of the other side, for messages.
    let peer: String
    static let maxQueuedBytes = 32 << 20
    /// Payloads up to this size are read through the staging buffer (one small copy);
    /// larger ones are read straight into their own buffer.
    static let smallPayload = 64 << 10
    static let stagingBytes = 256 << 10

    private struct Outgoing {
        var header: FramedWire.Header
        var payload: FramedBytes?
    }

    // Guarded by `cond`.
    private let cond = NSCondition()
    private var queue: [Outgoing] = []
    private var queuedBytes = 0
    private var closed = false
    /// `closeWhenFlushed` was called: the writer sends what is queued, then half-closes.
    private var draining = false
    private var closeError: RPCError?
    private var spaceWaiters: [CheckedContinuation<Void, any Error>] = []
    private var threadsRunning = 0

    private var onFrame: (@Sendable (FramedWire.Header, FramedBytes) -> Void)?
    private var onClose: (@Sendable (RPCError) -> Void)?

    init(fd: Int32, peer: String) {
        self.fd = fd
        self.peer = peer
    }

    /// Starts the reader and writer threads.
    func start(onFrame: @escaping @Sendable (FramedWire.Header, FramedBytes) -> Void,
               onClose: @escaping @Sendable (RPCError) -> Void) {
        self.onFrame = onFrame
        self.onClose = onClose
        cond.lock()
        threadsRunning = 2
        cond.unlock()
        let reader = Thread { [self] in readLoop() }
        reader.name = "loom-framed-read"
        reader.stackSize = 1 << 20
        let writer = Thread { [self] in writeLoop() }
        writer.name = "loom-framed-write"
        writer.stackSize = 1 << 20
        reader.start()
        writer.start()
    }

    /// Whether the connection has failed or been closed (sends throw).
    var isClosed: Bool {
        cond.lock()
        defer { cond.unlock() }
        return closed
    }

    /// Queues a frame; waits while the queue is over `maxQueuedBytes`.
    func send(_ kind: FramedWire.FrameKind, stream: UInt32, _ payload: FramedBytes? = nil) async throws {
        let mustWait = try enqueue(kind, stream: stream, payload)
        guard mustWait else { return }
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            cond.lock()
            if let e = closeError {
                cond.unlock()
                c.resume(throwing: e)
            } else if queuedBytes <= Self.maxQueuedBytes {
                cond.unlock()
                c.resume()
            } else {
                spaceWaiters.append(c)
                cond.unlock()
            }
        }
    }

    /// Queues a frame without waiting for room (control frames).
    func sendNow(_ kind: FramedWire.FrameKind, stream: UInt32, _ payload: FramedBytes? = nil) {
        _ = try? enqueue(kind, stream: stream, payload)
    }

    /// Queues; returns whether the queue is over its limit.
    private func enqueue(_ kind: FramedWire.FrameKind, stream: UInt32, _ payload: FramedBytes?) throws -> Bool {
        let n = payload?.count ?? 0
        cond.lock()
        defer { cond.unlock() }
        if let e = closeError { throw e }
        queue.append(Outgoing(header: .init(stream: stream, kind: kind, length: n), payload: payload))
        queuedBytes += n + FramedWire.headerBytes
        cond.signal()
        return queuedBytes > Self.maxQueuedBytes
    }

    /// Closes the socket (both threads end; `onClose` runs once with `reason`).
    func close(_ reason: RPCError = RPCError(code: .unavailable, message: "framed transport: connection closed")) {
        fail(reason)
    }

    /// Sends what is queued (a call's last status), then closes the sending side; the
    /// connection ends when the peer closes its side too, or `linger` later.
    func closeWhenFlushed(linger: Duration = .seconds(2)) {
        cond.lock()
        self.linger = linger
        draining = true
        cond.broadcast()
        cond.unlock()
    }
    private var linger: Duration = .seconds(2)  // guarded by `cond`

    private func fail(_ error: RPCError) {
        cond.lock()
        if closed {
            cond.unlock()
            return
        }
        closed = true
        closeError = error
        let waiters = spaceWaiters
        spaceWaiters = []
        queue = []
        let closeHandler = onClose
        cond.broadcast()
        cond.unlock()
        shutdown(fd, Int32(SHUT_RDWR))
        for w in waiters { w.resume(throwing: error) }
        closeHandler?(error)
    }

    private func threadEnded() {
        cond.lock()
        threadsRunning -= 1
        let last = threadsRunning == 0
        if last {
            // Both threads are done: nothing reads the handlers any more (`fail` copies
            // `onClose` under the lock). Dropping them breaks the cycle through the owner.
            onFrame = nil
            onClose = nil
        }
        cond.unlock()
        if last { Glibc.close(fd) }
    }

    // MARK: Writer

    private func writeLoop() {
        defer { threadEnded() }
        let headers = WireBuffer(capacity: 1024 * FramedWire.headerBytes)
        var iov: [iovec] = []
        iov.reserveCapacity(1024)
        while true {
            cond.lock()
            while queue.isEmpty && !closed && !draining { cond.wait() }
            if closed {
                cond.unlock()
                return
            }
            if queue.isEmpty && draining {
                // Everything is sent: half-close, give the peer `linger` to close its side
                // (its reader sees the end of the stream after the last status), then close.
                cond.unlock()
                shutdown(fd, Int32(SHUT_WR))
                let until = Date().addingTimeInterval(Double(linger.components.seconds) + Double(linger.components.attoseconds) * 1e-18)
                cond.lock()
                while !closed && cond.wait(until: until) {}
                let done = closed
                cond.unlock()
                if !done { fail(RPCError(code: .unavailable, message: "framed transport: the server shut down")) }
                return
            }
            // Take up to 1024 frames (their headers fit the header buffer).
            let take = Swift.min(queue.count, 1024)
            let batch = Array(queue.prefix(take))
            queue.removeFirst(take)
            cond.unlock()

            var batchBytes = 0
            iov.removeAll(keepingCapacity: true)
            for (i, f) in batch.enumerated() {
                let h = headers.base + i * FramedWire.headerBytes
                FramedWire.writeHeader(f.header, to: h)
                iov.append(iovec(iov_base: h, iov_len: FramedWire.headerBytes))
                f.payload?.forEachPart { p, n in iov.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: p), iov_len: n)) }
                batchBytes += FramedWire.headerBytes + f.header.length
            }
            if let error = writeAll(&iov) {
                fail(error)
                return
            }
            withExtendedLifetime(batch) {}
            cond.lock()
            queuedBytes -= batchBytes
            var ready: [CheckedContinuation<Void, any Error>] = []
            if queuedBytes <= Self.maxQueuedBytes {
                ready = spaceWaiters
                spaceWaiters = []
            }
            cond.unlock()
            for w in ready { w.resume() }
        }
    }

    /// Writes every byte `iov` describes (IOV_MAX entries per call, partial writes resumed).
    private func writeAll(_ iov: inout [iovec]) -> RPCError? {
        var first = 0
        let maxIOV = 1024
        while first < iov.count {
            let n = Swift.min(iov.count - first, maxIOV)
            let written = iov.withUnsafeBufferPointer { writev(fd, $0.baseAddress! + first, Int32(n)) }
            if written < 0 {
                if errno == EINTR { continue }
                return RPCError(code: .unavailable, message: "framed transport: writing to \(peer) failed: \(String(cString: strerror(errno)))")
            }
            var left = written
            while left > 0 && first < iov.count {
                if left >= iov[first].iov_len {
                    left -= iov[first].iov_len
                    first += 1
                } else {
                    iov[first].iov_base += left
                    iov[first].iov_len -= left
                    left = 0
                }
            }
            while first < iov.count && iov[first].iov_len == 0 { first += 1 }
        }
        return nil
    }

    // MARK: Reader

    private func readLoop() {
        defer { threadEnded() }
        let staging = WireBuffer(capacity: Self.stagingBytes)
        var start = 0
        var end = 0

        /// Reads until at least `need` bytes are staged from `start` (moving them to the
        /// front first when they would not fit). False at end of stream or on error.
        func fill(_ need: Int) -> Bool {
            if start + need > staging.capacity {
                if end > start { memmove(staging.base, staging.base + start, end - start) }
                end -= start
                start = 0
            }
            while end - start < need {
                let r = read(fd, staging.base + end, staging.capacity - end)
                if r > 0 { end += r; continue }
                if r < 0 && errno == EINTR { continue }
                return false
            }
            return true
        }

        func readError() -> RPCError {
            let why = errno == 0 ? "closed by the peer" : String(cString: strerror(errno))
            return RPCError(code: .unavailable, message: "framed transport: connection to \(peer) \(why)")
        }

        while true {
            errno = 0
            guard fill(FramedWire.headerBytes) else { return fail(readError()) }
            let header: FramedWire.Header
            do {
                header = try FramedWire.readHeader(staging.base + start)
            } catch {
                return fail(error as? RPCError ?? RPCError(code: .internalError, message: "\(error)"))
            }
            start += FramedWire.headerBytes
            let n = header.length
            let payload: FramedBytes
            if n <= Self.smallPayload {
                guard fill(n) else { return fail(readError()) }
                let b = WireBuffer(capacity: n)
                if n > 0 { b.base.copyMemory(from: staging.base + start, byteCount: n) }
                start += n
                payload = FramedBytes(buffer: b, count: n)
            } else {
                let b = WireBuffer(capacity: n)
                let staged = Swift.min(end - start, n)
                if staged > 0 { b.base.copyMemory(from: staging.base + start, byteCount: staged) }
                start += staged
                var got = staged
                while got < n {
                    let r = read(fd, b.base + got, n - got)
                    if r > 0 { got += r; continue }
                    if r < 0 && errno == EINTR { continue }
                    return fail(readError())
                }
                payload = FramedBytes(buffer: b, count: n)
            }
            if start == end {
                start = 0
                end = 0
            }
            onFrame?(header, payload)
        }
    }
}

// MARK: Sockets

enum FramedSocket {
    static func error(_ what: String) -> RPCError {
        RPCError(code: .unavailable, message: "framed transport: \(what): \(String(cString: strerror(errno)))")
    }

    /// Addresses for `host:port` (numeric or a name).
    static func resolve(_ host: String, _ port: Int, passive: Bool) throws -> [(family: Int32, addr: Data)] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw RPCError(code: .unavailable, message: "framed transport: cannot resolve \(host):\(port): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var out: [(Int32, Data)] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let a = p {
            out.append((a.pointee.ai_family, Data(bytes: a.pointee.ai_addr, count: Int(a.pointee.ai_addrlen))))
            p = a.pointee.ai_next
        }
        return out
    }

    /// TCP_NODELAY and the socket buffer sizes (`socketBufferBytes`).
    static func configure(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var size = socketBufferBytes
        if size > 0 {
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// Socket send and receive buffer size asked of the kernel (capped by its
    /// `net.core.wmem_max`/`rmem_max`): 4 MiB, so a server can queue a whole 1.8 MB frame
    /// response and start the next while the client reads (single frame samples +10–20%
    /// over the kernel's autotuning in alternating runs, session 14).
    /// `LOOM_FRAMED_SOCKET_BUFFER` sets it (bytes; 0 leaves it to the kernel's autotuning).
    static let socketBufferBytes: Int32 = ProcessInfo.processInfo.environment["LOOM_FRAMED_SOCKET_BUFFER"].flatMap { Int32($0) } ?? (4 << 20)

    /// A listening socket on `host:port` (0: a free port) and the port it got.
    static func listen(host: String, port: Int) throws -> (fd: Int32, port: Int) {
        var lastError = RPCError(code: .unavailable, message: "framed transport: no address for \(host):\(port)")
        for (family, addr) in try resolve(host, port, passive: true) {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = error("socket"); continue }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            let ok = addr.withUnsafeBytes { bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) } == 0
            guard ok, Glibc.listen(fd, 128) == 0 else {
                lastError = error("cannot listen on \(host):\(port)")
                Glibc.close(fd)
                continue
            }
            var storage = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            return (fd, boundPort(storage))
        }
        throw lastError
    }

    static func boundPort(_ s: sockaddr_storage) -> Int {
        var s = s
        return withUnsafeBytes(of: &s) { raw -> Int in
            let family = raw.load(fromByteOffset: 0, as: sa_family_t.self)
            let netPort = raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self)
            return Int(family) == Int(AF_INET) || Int(family) == Int(AF_INET6) ? Int(UInt16(bigEndian: netPort)) : 0
        }
    }

    /// A connected socket to `host:port`, failing after `timeout`.
    static func connect(host: String, port: Int, timeout: Duration) throws -> Int32 {
        var lastError = RPCError(code: .unavailable, message: "framed transport: no address for \(host):\(port)")
        for (family, addr) in try resolve(host, port, passive: false) {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { lastError = error("socket"); continue }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var rc = addr.withUnsafeBytes { Glibc.connect(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
            if rc != 0 && errno == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
                if poll(&pfd, 1, ms) == 1 {
                    var err: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                    errno = err
                    rc = err == 0 ? 0 : -1
                } else {
                    errno = ETIMEDOUT
                    rc = -1
                }
            }
            guard rc == 0 else {
                lastError = error("cannot connect to \(host):\(port)")
                Glibc.close(fd)
                continue
            }
            _ = fcntl(fd, F_SETFL, flags)
            configure(fd)
            return fd
        }
        throw lastError
    }

    /// Sends the preface and checks the peer's (both sides do this first).
    static func exchangePreface(_ fd: Int32, peer: String, timeout: Duration) throws {
        let sent = FramedWire.preface.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
        guard sent == FramedWire.preface.count else { throw error("sending the preface to \(peer)") }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var got = [UInt8](repeating: 0, count: FramedWire.preface.count)
        var n = 0
        while n < got.count {
            let r = got.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + n, $0.count - n) }
            if r > 0 { n += r; continue }
            if r < 0 && errno == EINTR { continue }
            throw RPCError(code: .unavailable,
                           message: "framed transport: \(peer) did not answer with the framed transport's preface (is it a Loom framed port, not an HTTP/2 gRPC port?)")
        }
        var off = timeval(tv_sec: 0, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &off, socklen_t(MemoryLayout<timeval>.size))
        guard got == FramedWire.preface else {
            throw RPCError(code: .unavailable,
                           message: "framed transport: \(peer) sent \(got) instead of the framed transport's preface (an HTTP/2 gRPC port?)")
        }
    }
}
