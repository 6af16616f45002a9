import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import ReplayServiceProto
import ReplayStorage
import TensorCore

/// Decoding of `SampleResponse` bytes (see `SampleWire`).
extension SampleWire {
    /// The samples of one `SampleResponse` message; each item becomes one chunk (keyed by
    /// the item key) holding its trajectory, in table `table`. Throws `.invalidArgument` for
    /// malformed bytes or tensors that do not match their shape.
    ///
    /// With `adoptMessageBytes` (default) and the NIO transport's bytes
    /// (`GRPCNIOTransportBytes`, a `ByteBuffer`), columns over `sharedColumnLimit` bytes are
    /// not copied: they are tensors over the message's bytes (`Tensor(adopting:)`), whose
    /// storage keeps a copy of the `ByteBuffer` (and so its memory) alive and reads it
    /// through that copy, which nobody writes (a `ByteBuffer` is copy-on-write: the transport
    /// writing into a buffer shared with it copies first). Such a tensor is read-only (a
    /// mutation copies it first) and keeps the whole message's buffer alive, not only its
    /// own bytes: a consumer keeping a few samples of many responses for long should copy
    /// them or pass `adoptMessageBytes: false`. Other byte types, columns whose bytes are not
    /// aligned for their dtype, and smaller columns are copied into tensor storage.
    public static func decode<Bytes: GRPCContiguousBytes>(_ bytes: Bytes, table: String,
                                                          adoptMessageBytes: Bool = true) throws(ReplayError) -> [ReplaySample] {
        if adoptMessageBytes, let message = bytes as? GRPCNIOTransportBytes {
            let owner = MessageBytes(message)
            return try decode(owner.bytes, table: table, owner: owner)
        }
        // The framed transport's received bytes are a `WireBuffer` nobody writes again.
        if adoptMessageBytes, let message = bytes as? FramedBytes, let (buffer, _) = message.contiguousBuffer {
            return try decode(message, table: table, owner: buffer)
        }
        return try decode(bytes, table: table, owner: nil)
    }

    /// Keeps a received message's bytes alive for the tensors adopting them. `bytes` is
    /// never mutated, so its `ByteBuffer` storage never moves: the pointer its
    /// `withUnsafeBytes` gives stays valid while this object lives.
    final class MessageBytes: Sendable {
        let bytes: GRPCNIOTransportBytes
        init(_ bytes: GRPCNIOTransportBytes) { self.bytes = bytes }
    }

    /// `decode` reading `bytes`; `owner` (holding `bytes`) is given to adopted columns.
    private static func decode<Bytes: GRPCContiguousBytes>(_ bytes: Bytes, table: String,
                                                           owner: (any AnyObject & Sendable)?) throws(ReplayError) -> [ReplaySample] {
        let result: Result<[ReplaySample], ReplayError> = bytes.withUnsafeBytes { buffer in
            do throws(ReplayError) {
                var r = Reader(buffer)
                var items: [WireItem] = []
                while !r.atEnd {
                    let (field, type) = try r.tag()
                    if field == 1 && type == .lengthDelimited {
                        var sub = try r.subReader()
                        items.append(try decodeItem(&sub))
                    } else {
                        try r.skip(type)
                    }
                }
                return .success(try samples(items, table: table, owner: owner))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Largest column of an item (bytes) decoded into a tensor shared with the response's
    /// other items (see `samples`).
    static let sharedColumnLimit = 4096

    /// One decoded column: validated dtype and shape, its bytes still in the message.
    private struct WireColumn {
        var dtype: DType
        var dims: [Int]
        var data: UnsafeRawBufferPointer
    }

    private struct WireItem {
        var info: SampleInfo
        var columns: [WireColumn]
    }

    /// The samples of a response's items. Small items (every column at most
    /// `sharedColumnLimit` bytes) whose columns agree in dtype and step shape across the
    /// response share one tensor per column, each item holding a view of its rows: a
    /// storage allocation per response instead of per item and column, which is most of
    /// the client's decoding cost for items of a few hundred bytes. Larger items (frames) get
    /// their own storage, or with `owner` adopt the message's bytes (see `tensor`).
    private static func samples(_ items: [WireItem], table: String, owner: (any AnyObject & Sendable)?) throws(ReplayError) -> [ReplaySample] {
        var out: [ReplaySample] = []
        out.reserveCapacity(items.count)
        var shared: [Tensor]?
        if items.count > 1, let first = items.first, !first.columns.isEmpty {
            var uniform = true
            check: for item in items {
                guard item.columns.count == first.columns.count else { uniform = false; break }
                for (c, col) in item.columns.enumerated() {
                    let f = first.columns[c]
                    guard col.data.count <= sharedColumnLimit, col.dtype == f.dtype, col.dims.count == f.dims.count,
                          col.dims.count >= 1, col.dims.dropFirst().elementsEqual(f.dims.dropFirst()) else {
                        uniform = false
                        break check
                    }
                }
            }
            if uniform {
                var tensors: [Tensor] = []
                for c in first.columns.indices {
                    var data = Data(capacity: items.reduce(0) { $0 + $1.columns[c].data.count })
                    var rows = 0
                    for item in items {
                        let col = item.columns[c]
                        if let base = col.data.baseAddress, col.data.count > 0 { data.append(base.assumingMemoryBound(to: UInt8.self), count: col.data.count) }
                        rows += col.dims[0]
                    }
                    tensors.append(Tensor(rawBytes: data, shape: [rows] + first.columns[c].dims.dropFirst(), dtype: first.columns[c].dtype))
                }
                shared = tensors
            }
        }
        var rowStart = Array(repeating: 0, count: items.first?.columns.count ?? 0)
        for item in items {
            var columns: [Tensor] = []
            columns.reserveCapacity(item.columns.count)
            for (c, col) in item.columns.enumerated() {
                if let shared {
                    columns.append(shared[c].narrowed(dim: 0, start: rowStart[c], length: col.dims[0]))
                    rowStart[c] += col.dims[0]
                } else {
                    columns.append(tensor(col, owner: owner))
                }
            }
            let chunk = try Chunk(key: item.info.key, columns: columns)
            out.append(ReplaySample(item: ReplayItem(key: item.info.key, table: table, priority: item.info.priority, chunks: [chunk]),
                                    info: item.info))
        }
        return out
    }

    /// A tensor for `column`: over the message's bytes when `owner` keeps them alive, the
    /// column is over `sharedColumnLimit` bytes and its bytes are aligned for its dtype (no
    /// copy); otherwise with storage of its own (one copy: message bytes -> tensor storage;
    /// the Data only wraps the message bytes).
    private static func tensor(_ column: WireColumn, owner: (any AnyObject & Sendable)?) -> Tensor {
        guard let base = column.data.baseAddress, column.data.count > 0 else {
            return Tensor(rawBytes: Data(), shape: column.dims, dtype: column.dtype)
        }
        if let owner, column.data.count > sharedColumnLimit, Tensor.canAdopt(base, dtype: column.dtype) {
            return Tensor(adopting: column.data, shape: column.dims, dtype: column.dtype, owner: owner)
        }
        let view = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: column.data.count, deallocator: .none)
        return Tensor(rawBytes: view, shape: column.dims, dtype: column.dtype)
    }

    private static func decodeItem(_ r: inout Reader) throws(ReplayError) -> WireItem {
        var info = SampleInfo(key: 0, probability: 0, tableSize: 0, priority: 0, timesSampled: 0)
        var columns: [WireColumn] = []
        while !r.atEnd {
            let (field, type) = try r.tag()
            switch (field, type) {
            case (1, .lengthDelimited):
                var sub = try r.subReader()
                try decodeInfo(&sub, into: &info)
            case (2, .lengthDelimited):
                var sub = try r.subReader()
                columns.append(try decodeTensor(&sub, what: columns.count))
            default:
                try r.skip(type)
            }
        }
        return WireItem(info: info, columns: columns)
    }

    private static func decodeInfo(_ r: inout Reader, into info: inout SampleInfo) throws(ReplayError) {
        while !r.atEnd {
            let (field, type) = try r.tag()
            switch (field, type) {
            case (1, .varint): info.key = try r.varint()
            case (2, .fixed64): info.probability = Double(bitPattern: try r.fixed64())
            case (3, .varint): info.tableSize = Int(truncatingIfNeeded: Int64(bitPattern: try r.varint()))
            case (4, .fixed64): info.priority = Double(bitPattern: try r.fixed64())
            case (5, .varint): info.timesSampled = Int(truncatingIfNeeded: Int64(bitPattern: try r.varint()))
            default: try r.skip(type)
            }
        }
    }

    private static func decodeTensor(_ r: inout Reader, what column: Int) throws(ReplayError) -> WireColumn {
        var dtype: UInt64 = 0
        var shape: [Int64] = []
        var data = UnsafeRawBufferPointer(start: nil, count: 0)
        while !r.atEnd {
            let (field, type) = try r.tag()
            switch (field, type) {
            case (1, .varint): dtype = try r.varint()
            case (2, .lengthDelimited):
                var sub = try r.subReader()
                while !sub.atEnd { shape.append(Int64(bitPattern: try sub.varint())) }
            case (2, .varint): shape.append(Int64(bitPattern: try r.varint()))
            case (3, .lengthDelimited): data = try r.lengthDelimited()
            default: try r.skip(type)
            }
        }
        let wire = Loom_Replay_DType(rawValue: Int(truncatingIfNeeded: dtype)) ?? .UNRECOGNIZED(Int(truncatingIfNeeded: dtype))
        let dt = try DType(wire: wire, what: "sampled item column \(column)")
        let dims = try checkedShape(shape, dtype: dt, byteCount: data.count, what: "sampled item column \(column)")
        return WireColumn(dtype: dt, dims: dims, data: data)
    }

    /// Reads a protobuf message from a buffer without copying.
    struct Reader {
        let base: UnsafeRawPointer?
        var position: Int
        let end: Int

        init(_ buffer: UnsafeRawBufferPointer) {
            base = buffer.baseAddress
            position = 0
            end = buffer.count
        }

        init(base: UnsafeRawPointer?, position: Int, end: Int) {
            self.base = base
            self.position = position
            self.end = end
        }

        var atEnd: Bool { position >= end }

        static func malformed(_ why: String) -> ReplayError {
            ReplayError(.invalidArgument, "malformed SampleResponse: \(why)")
        }

        mutating func byte() throws(ReplayError) -> UInt8 {
            guard position < end, let base else { throw Self.malformed("truncated at byte \(position)") }
            let b = base.load(fromByteOffset: position, as: UInt8.self)
            position += 1
            return b
        }

        mutating func varint() throws(ReplayError) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                let b = try byte()
                value |= UInt64(b & 0x7F) << shift
                if b < 0x80 { return value }
                shift += 7
                guard shift < 64 else { throw Self.malformed("varint longer than 10 bytes at byte \(position)") }
            }
        }

        mutating func fixed64() throws(ReplayError) -> UInt64 {
            guard end - position >= 8, let base else { throw Self.malformed("truncated fixed64 at byte \(position)") }
            let v = base.loadUnaligned(fromByteOffset: position, as: UInt64.self)
            position += 8
            return UInt64(littleEndian: v)
        }

        mutating func tag() throws(ReplayError) -> (UInt64, WireType) {
            let t = try varint()
            guard let type = WireType(rawValue: t & 7), t >> 3 != 0 else {
                throw Self.malformed("unsupported tag \(t) at byte \(position)")
            }
            return (t >> 3, type)
        }

        mutating func lengthDelimited() throws(ReplayError) -> UnsafeRawBufferPointer {
            let n = try varint()
            guard n <= UInt64(end - position) else { throw Self.malformed("length \(n) past the end at byte \(position)") }
            let start = base.map { $0 + position }
            position += Int(n)
            return UnsafeRawBufferPointer(start: start, count: Int(n))
        }

        mutating func subReader() throws(ReplayError) -> Reader {
            let n = try varint()
            guard n <= UInt64(end - position) else { throw Self.malformed("length \(n) past the end at byte \(position)") }
            let sub = Reader(base: base, position: position, end: position + Int(n))
            position += Int(n)
            return sub
        }

        mutating func skip(_ type: WireType) throws(ReplayError) {
            switch type {
            case .varint: _ = try varint()
            case .fixed64:
                guard end - position >= 8 else { throw Self.malformed("truncated fixed64 at byte \(position)") }
                position += 8
            case .fixed32:
                guard end - position >= 4 else { throw Self.malformed("truncated fixed32 at byte \(position)") }
                position += 4
            case .lengthDelimited: _ = try lengthDelimited()
            }
        }
    }
}
