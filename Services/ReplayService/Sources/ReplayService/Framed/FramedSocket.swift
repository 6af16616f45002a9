#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GRPCCore

/// Socket calls of the framed transport: resolving, listening, connecting, options and the
/// preface exchange.
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
