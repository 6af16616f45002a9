#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GRPCCore

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
