import Foundation
import GRPCCore
import GRPCProtobuf
import ReplayServiceProto
import ReplayStorage
import SwiftProtobuf

/// `loom.replay.InsertRequest` on the framed transport without copying column bytes in user
/// space: the client sends each large `TensorData.data` from where it is (a gather list; the
/// writer's `TensorData` are already views of tensor storage, see `Loom_Replay_TensorData(_:)`)
/// and the server's message refers to the received buffer instead of copying each field out
/// of it (the tensor made from it then adopts those bytes). Same wire format as the generated
/// code; over HTTP/2 (other byte types) both fall back to SwiftProtobuf.
public enum InsertWire {
    /// Column bytes over this size are referenced rather than copied.
    static let referenceLimit = 4096

    /// The message as a gather list (the bytes SwiftProtobuf would write: fields in number
    /// order, defaults omitted, packed repeated scalars).
    public static func encodeGather(_ message: Loom_Replay_InsertRequest) throws -> FramedBytes {
        var b = GatherBuilder()
        for chunk in message.chunks {
            let size = chunkSize(chunk)
            b.tag(1, 2)
            b.varint(UInt64(size))
            if chunk.key != 0 { b.tag(1, 0); b.varint(chunk.key) }
            for column in chunk.columns {
                b.tag(2, 2)
                b.varint(UInt64(tensorSize(column)))
                writeTensor(column, &b)
            }
        }
        for item in message.items {
            let bytes: [UInt8] = try item.serializedBytes()
            b.tag(2, 2)
            b.varint(UInt64(bytes.count))
            b.append(bytes)
        }
        if !message.releaseChunkKeys.isEmpty {
            b.tag(3, 2)
            b.varint(UInt64(message.releaseChunkKeys.reduce(0) { $0 + SampleWire.varintSize($1) }))
            for k in message.releaseChunkKeys { b.varint(k) }
        }
        if message.timeoutMs != 0 { b.tag(4, 0); b.varint(UInt64(bitPattern: message.timeoutMs)) }
        return b.build()
    }

    private static func tensorSize(_ t: Loom_Replay_TensorData) -> Int {
        var n = 0
        if t.dtype.rawValue != 0 { n += 1 + SampleWire.varintSize(UInt64(t.dtype.rawValue)) }
        if !t.shape.isEmpty {
            let s = t.shape.reduce(0) { $0 + SampleWire.varintSize(UInt64(bitPattern: $1)) }
            n += 1 + SampleWire.varintSize(UInt64(s)) + s
        }
        if !t.data.isEmpty { n += 1 + SampleWire.varintSize(UInt64(t.data.count)) + t.data.count }
        return n
    }

    private static func chunkSize(_ c: Loom_Replay_ChunkData) -> Int {
        var n = c.key != 0 ? 1 + SampleWire.varintSize(c.key) : 0
        for col in c.columns {
            let s = tensorSize(col)
            n += 1 + SampleWire.varintSize(UInt64(s)) + s
        }
        return n
    }

    private static func writeTensor(_ t: Loom_Replay_TensorData, _ b: inout GatherBuilder) {
        if t.dtype.rawValue != 0 { b.tag(1, 0); b.varint(UInt64(t.dtype.rawValue)) }
        if !t.shape.isEmpty {
            b.tag(2, 2)
            b.varint(UInt64(t.shape.reduce(0) { $0 + SampleWire.varintSize(UInt64(bitPattern: $1)) }))
            for d in t.shape { b.varint(UInt64(bitPattern: d)) }
        }
        if !t.data.isEmpty {
            b.tag(3, 2)
            b.varint(UInt64(t.data.count))
            if t.data.count > referenceLimit {
                b.reference(t.data)
            } else {
                t.data.withUnsafeBytes { b.append($0) }
            }
        }
    }

    /// Builds a gather list: small fields into an arena, large `Data` by reference.
    struct GatherBuilder {
        enum Run { case arena(Range<Int>), external(UnsafeRawPointer, Int) }
        var arena: [UInt8] = []
        var runs: [Run] = []
        var runStart = 0
        var keepAlive: [any Sendable] = []

        mutating func tag(_ field: UInt64, _ type: UInt64) { varint(field << 3 | type) }
        mutating func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                arena.append(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            arena.append(UInt8(v))
        }
        mutating func append(_ bytes: some Sequence<UInt8>) { arena.append(contentsOf: bytes) }
        mutating func reference(_ data: Data) {
            closeRun()
            // A `Data` this large keeps its bytes in a heap storage that does not move while
            // this copy of it (in `keepAlive`) lives unmutated.
            data.withUnsafeBytes { runs.append(.external($0.baseAddress!, $0.count)) }
            keepAlive.append(data)
        }
        mutating func closeRun() {
            if arena.count > runStart { runs.append(.arena(runStart..<arena.count)) }
            runStart = arena.count
        }
        mutating func build() -> FramedBytes {
            closeRun()
            let buffer = WireBuffer(capacity: arena.count)
            arena.withUnsafeBytes { if $0.count > 0 { buffer.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            let parts = runs.map { run -> GatherList.Part in
                switch run {
                case .arena(let r): return GatherList.Part(base: UnsafeRawPointer(buffer.base + r.lowerBound), count: r.count)
                case .external(let p, let n): return GatherList.Part(base: p, count: n)
                }
            }
            return FramedBytes(gather: GatherList(parts: parts, arena: buffer, keepAlive: keepAlive))
        }
    }

    // MARK: Decoding

    /// The message in `bytes` (one `WireBuffer` the transport received); column data over
    /// `referenceLimit` bytes are `Data` over that buffer (kept alive by the `Data`), not
    /// copies. Throws `.invalidArgument` for malformed bytes.
    public static func decode(_ bytes: FramedBytes) throws(ReplayError) -> Loom_Replay_InsertRequest {
        guard let (buffer, _) = bytes.contiguousBuffer else {
            do {
                return try bytes.withUnsafeBytes { try Loom_Replay_InsertRequest(serializedBytes: Array($0)) }
            } catch {
                throw ReplayError(.invalidArgument, "malformed InsertRequest: \(error)")
            }
        }
        let result: Result<Loom_Replay_InsertRequest, ReplayError> = bytes.withUnsafeBytes { raw in
            do throws(ReplayError) {
                var r = SampleWire.Reader(raw)
                var m = Loom_Replay_InsertRequest()
                while !r.atEnd {
                    let (field, type) = try r.tag()
                    switch (field, type) {
                    case (1, .lengthDelimited):
                        var sub = try r.subReader()
                        m.chunks.append(try decodeChunk(&sub, buffer))
                    case (2, .lengthDelimited):
                        let item = try r.lengthDelimited()
                        do {
                            m.items.append(try Loom_Replay_ItemData(serializedBytes: Array(item)))
                        } catch {
                            throw ReplayError(.invalidArgument, "malformed InsertRequest item: \(error)")
                        }
                    case (3, .lengthDelimited):
                        var sub = try r.subReader()
                        while !sub.atEnd { m.releaseChunkKeys.append(try sub.varint()) }
                    case (3, .varint): m.releaseChunkKeys.append(try r.varint())
                    case (4, .varint): m.timeoutMs = Int64(bitPattern: try r.varint())
                    default: try r.skip(type)
                    }
                }
                return .success(m)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private static func decodeChunk(_ r: inout SampleWire.Reader, _ buffer: WireBuffer) throws(ReplayError) -> Loom_Replay_ChunkData {
        var c = Loom_Replay_ChunkData()
        while !r.atEnd {
            let (field, type) = try r.tag()
            switch (field, type) {
            case (1, .varint): c.key = try r.varint()
            case (2, .lengthDelimited):
                var sub = try r.subReader()
                c.columns.append(try decodeTensor(&sub, buffer))
            default: try r.skip(type)
            }
        }
        return c
    }

    private static func decodeTensor(_ r: inout SampleWire.Reader, _ buffer: WireBuffer) throws(ReplayError) -> Loom_Replay_TensorData {
        var t = Loom_Replay_TensorData()
        while !r.atEnd {
            let (field, type) = try r.tag()
            switch (field, type) {
            case (1, .varint):
                let v = Int(truncatingIfNeeded: try r.varint())
                t.dtype = Loom_Replay_DType(rawValue: v) ?? .UNRECOGNIZED(v)
            case (2, .lengthDelimited):
                var sub = try r.subReader()
                while !sub.atEnd { t.shape.append(Int64(bitPattern: try sub.varint())) }
            case (2, .varint): t.shape.append(Int64(bitPattern: try r.varint()))
            case (3, .lengthDelimited):
                let data = try r.lengthDelimited()
                guard let base = data.baseAddress, data.count > 0 else { t.data = Data(); continue }
                if data.count > referenceLimit {
                    // The Data's deallocator holds the received buffer: the bytes stay valid
                    // (and unwritten: nothing writes a received buffer) as long as it lives.
                    t.data = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: data.count,
                                  deallocator: .custom { _, _ in withExtendedLifetime(buffer) {} })
                } else {
                    t.data = Data(bytes: base, count: data.count)
                }
            default: try r.skip(type)
            }
        }
        return t
    }
}

/// Serializes an `InsertRequest` (client side of Insert and InsertStream): a gather list on
/// the framed transport, SwiftProtobuf's encoder otherwise.
public struct InsertRequestSerializer: MessageSerializer {
    public typealias Message = Loom_Replay_InsertRequest
    public init() {}
    public func serialize<Bytes: GRPCContiguousBytes>(_ message: Loom_Replay_InsertRequest) throws -> Bytes {
        if Bytes.self == FramedBytes.self { return try InsertWire.encodeGather(message) as! Bytes }
        return try ProtobufSerializer<Loom_Replay_InsertRequest>().serialize(message)
    }
}

/// Deserializes an `InsertRequest` (server side of Insert and InsertStream): large column
/// bytes referring to the framed transport's received buffer, SwiftProtobuf's decoder
/// otherwise.
public struct InsertRequestDeserializer: MessageDeserializer {
    public typealias Message = Loom_Replay_InsertRequest
    public init() {}
    public func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Loom_Replay_InsertRequest {
        if let framed = serializedMessageBytes as? FramedBytes {
            do {
                return try InsertWire.decode(framed)
            } catch {
                throw RPCError(error)
            }
        }
        return try ProtobufDeserializer<Loom_Replay_InsertRequest>().deserialize(serializedMessageBytes)
    }
}
