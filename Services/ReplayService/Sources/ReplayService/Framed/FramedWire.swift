import GRPCCore

/// The framed transport's wire: after an 8-byte preface each way (`preface`), frames of a
/// 16-byte header — stream id (UInt32), kind (UInt8), three zero bytes, payload length
/// (UInt64), all little-endian — followed by the payload.
///
/// Kinds (`FrameKind`): `open` (client: the service and method names and the request
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
