import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import ReplayServiceProto
import ReplayStorage
import TensorCore

/// The hot path of the Sample RPC, without SwiftProtobuf's message objects: sampled items
/// are written straight into the bytes of a `loom.replay.SampleResponse`, and read straight
/// out of them, in the proto's wire format (so generated clients and servers interoperate).
///
/// Why: a generated `SampleResponse` costs, per item, a `SampledItem` and a `SampleInfo`
/// object, a `TensorData` per column, a `Data` copy of every column's bytes, and generic
/// visitor dispatch while encoding; the client side decodes into the same objects and
/// copies the bytes a second time into tensor storage. Here each column's bytes are copied
/// once on the server (chunk storage -> response bytes) and at most once on the client:
/// columns over 4 KiB (frames) received through the NIO transport are tensors over the
/// message bytes themselves (`Tensor(adopting:)`, no copy; see `decode`), other columns
/// are copied once into tensor storage (items of at most 4 KiB per column: into one tensor
/// per column shared by the response's items; see `samples`).
///
/// Wire layout (proto3; fields with default values are omitted, as the generated encoder
/// does):
///
///     SampleResponse { repeated SampledItem items = 1; }
///     SampledItem    { SampleInfo info = 1; repeated TensorData columns = 2; }
///     SampleInfo     { uint64 key = 1; double probability = 2; int64 table_size = 3;
///                      double priority = 4; int64 times_sampled = 5; }
///     TensorData     { DType dtype = 1; repeated int64 shape = 2 [packed]; bytes data = 3; }
///
/// The decoder accepts what any conforming encoder may send: fields in any order, unpacked
/// `shape`, unknown fields (skipped).
public enum SampleWire {
    // MARK: Encoding

    /// The `SampleResponse` bytes for `samples` (one item per sample, its columns as the
    /// item's trajectory of each column).
    ///
    /// Column bytes are copied straight from the chunks' tensor storage (the rows of the
    /// item's step range, chunk by chunk): no per-column tensor view or concatenation.
    public static func encode<Bytes: GRPCContiguousBytes>(_ samples: [ReplaySample]) -> Bytes {
        // The framed transport sends a gather list: column bytes stay in chunk storage.
        if Bytes.self == FramedBytes.self { return encodeGather(samples) as! Bytes }
        // The bytes are written straight into the new buffer (`EncodedSamples` writes in
        // `_copyContents`): no zero-fill pass over a megabyte response first, as
        // `Bytes(repeating:count:)` would need.
        return Bytes(EncodedSamples(samples))
    }

    /// Column runs of at least this many bytes are sent from chunk storage by the framed
    /// transport (smaller ones are copied: an iovec per few hundred bytes costs more).
    static let gatherThreshold = 4096

    /// The `SampleResponse` as a gather list for the framed transport: the tags, lengths,
    /// infos and shapes are written into a small arena; each contiguous run of a column's
    /// rows of at least `gatherThreshold` bytes is a reference to the chunk's tensor storage
    /// (the list keeps the tensor alive), which the transport's `writev` reads in place. The
    /// bytes sent are exactly those of `encode`.
    public static func encodeGather(_ samples: [ReplaySample]) -> FramedBytes {
        let (itemSizes, total) = sizes(samples)
        var external = 0
        for s in samples {
            for c in 0..<s.item.columnCount {
                forEachRun(s.item, c) { column, range in
                    if range.count >= gatherThreshold && column.isContiguous { external += range.count }
                }
            }
        }
        let arena = WireBuffer(capacity: total - external)
        var w = Writer(base: arena.base, end: total - external)
        w.gather = Writer.Gather()
        writeAll(samples, itemSizes: itemSizes, &w)
        w.flushRun()
        precondition(w.position == total - external, "SampleWire.encodeGather: wrote \(w.position) of \(total - external) arena bytes")
        return FramedBytes(gather: GatherList(parts: w.gather!.parts, arena: arena, keepAlive: w.gather!.keepAlive.map { $0 as any Sendable }))
    }

    /// Pass 1 of encoding: each item's encoded size (without its own tag and length) and the
    /// response's total size.
    static func sizes(_ samples: [ReplaySample]) -> (items: [Int], total: Int) {
        var itemSizes: [Int] = []
        itemSizes.reserveCapacity(samples.count)
        var total = 0
        for s in samples {
            let info = infoSize(s.info)
            var size = 1 + varintSize(UInt64(info)) + info
            for c in 0..<s.item.columnCount {
                let n = columnSize(s.item, c)
                size += 1 + varintSize(UInt64(n)) + n
            }
            itemSizes.append(size)
            total += 1 + varintSize(UInt64(size)) + size
        }
        return (itemSizes, total)
    }

    /// Pass 2 of encoding: writes the response (`sizes` computed by `sizes`) into `buffer`,
    /// which has exactly `total` bytes. One copy of each column's bytes.
    static func write(_ samples: [ReplaySample], itemSizes: [Int], into buffer: UnsafeMutableRawBufferPointer) {
        guard buffer.count > 0 else { return }
        var w = Writer(base: buffer.baseAddress!, end: buffer.count)
        writeAll(samples, itemSizes: itemSizes, &w)
        precondition(w.position == buffer.count, "SampleWire.encode: wrote \(w.position) of \(buffer.count) bytes")
    }

    private static func writeAll(_ samples: [ReplaySample], itemSizes: [Int], _ w: inout Writer) {
        for (i, s) in samples.enumerated() {
            w.tag(1, .lengthDelimited)
            w.varint(UInt64(itemSizes[i]))
            w.tag(1, .lengthDelimited)
            w.varint(UInt64(infoSize(s.info)))
            writeInfo(s.info, &w)
            for c in 0..<s.item.columnCount {
                w.tag(2, .lengthDelimited)
                w.varint(UInt64(columnSize(s.item, c)))
                writeColumn(s.item, c, &w)
            }
        }
    }

    /// Bytes of one step of column `c` (every chunk of an item has the same step shape).
    private static func rowBytes(_ column: Tensor) -> Int {
        var n = column.dtype.byteSize
        for d in column.shape.dropFirst() { n *= d }
        return n
    }

    /// Encoded size of column `c` of `item` as a `TensorData` of shape
    /// `[item.length] + step shape`.
    private static func columnSize(_ item: ReplayItem, _ c: Int) -> Int {
        let first = item.chunks[0].columns[c]
        var n = 0
        let dt = UInt64(first.dtype.wire.rawValue)
        if dt != 0 { n += 1 + varintSize(dt) }
        var s = varintSize(UInt64(item.length))
        for d in first.shape.dropFirst() { s += varintSize(UInt64(bitPattern: Int64(d))) }
        n += 1 + varintSize(UInt64(s)) + s
        let b = item.length * rowBytes(first)
        if b > 0 { n += 1 + varintSize(UInt64(b)) + b }
        return n
    }

    /// Writes column `c` of `item` as a `TensorData`: its rows `offset ..< offset + length`
    /// of the chunks laid end to end, copied from each chunk's storage.
    private static func writeColumn(_ item: ReplayItem, _ c: Int, _ w: inout Writer) {
        let first = item.chunks[0].columns[c]
        let dt = UInt64(first.dtype.wire.rawValue)
        if dt != 0 { w.tag(1, .varint); w.varint(dt) }
        var s = varintSize(UInt64(item.length))
        for d in first.shape.dropFirst() { s += varintSize(UInt64(bitPattern: Int64(d))) }
        w.tag(2, .lengthDelimited)
        w.varint(UInt64(s))
        w.varint(UInt64(item.length))
        for d in first.shape.dropFirst() { w.varint(UInt64(bitPattern: Int64(d))) }
        let row = rowBytes(first)
        let b = item.length * row
        guard b > 0 else { return }
        w.tag(3, .lengthDelimited)
        w.varint(UInt64(b))
        forEachRun(item, c) { column, range in
            if w.gather != nil && range.count >= gatherThreshold && column.isContiguous {
                // Contiguous: `withRawBytes` gives the storage's own bytes, which live as
                // long as the tensor the gather list keeps.
                column.withRawBytes { raw in w.reference(UnsafeRawBufferPointer(rebasing: raw[range]), owner: column) }
            } else {
                column.withRawBytes { raw in w.bytes(UnsafeRawBufferPointer(rebasing: raw[range])) }
            }
        }
    }

    /// Calls `body` with each chunk column holding rows of `item`'s column `c`, in order,
    /// and the byte range of those rows in it.
    private static func forEachRun(_ item: ReplayItem, _ c: Int, _ body: (Tensor, Range<Int>) -> Void) {
        let row = rowBytes(item.chunks[0].columns[c])
        var skip = item.offset
        var remaining = item.length
        for chunk in item.chunks where remaining > 0 {
            if skip >= chunk.length { skip -= chunk.length; continue }
            let take = Swift.min(chunk.length - skip, remaining)
            if take * row > 0 { body(chunk.columns[c], (skip * row)..<((skip + take) * row)) }
            remaining -= take
            skip = 0
        }
    }

    private static func infoSize(_ info: SampleInfo) -> Int {
        var n = 0
        if info.key != 0 { n += 1 + varintSize(info.key) }
        if info.probability.bitPattern != 0 { n += 9 }
        if info.tableSize != 0 { n += 1 + varintSize(UInt64(bitPattern: Int64(info.tableSize))) }
        if info.priority.bitPattern != 0 { n += 9 }
        if info.timesSampled != 0 { n += 1 + varintSize(UInt64(bitPattern: Int64(info.timesSampled))) }
        return n
    }

    private static func writeInfo(_ info: SampleInfo, _ w: inout Writer) {
        if info.key != 0 { w.tag(1, .varint); w.varint(info.key) }
        if info.probability.bitPattern != 0 { w.tag(2, .fixed64); w.fixed64(info.probability.bitPattern) }
        if info.tableSize != 0 { w.tag(3, .varint); w.varint(UInt64(bitPattern: Int64(info.tableSize))) }
        if info.priority.bitPattern != 0 { w.tag(4, .fixed64); w.fixed64(info.priority.bitPattern) }
        if info.timesSampled != 0 { w.tag(5, .varint); w.varint(UInt64(bitPattern: Int64(info.timesSampled))) }
    }

    static func varintSize(_ v: UInt64) -> Int {
        // 1 byte per 7 bits, at least one.
        v == 0 ? 1 : (64 - v.leadingZeroBitCount + 6) / 7
    }

    enum WireType: UInt64 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
    }

    /// Writes into a buffer whose exact size was computed beforehand.
    struct Writer {
        let base: UnsafeMutableRawPointer
        let end: Int
        var position = 0

        /// Gather mode (`encodeGather`): `position` counts arena bytes; `parts` lists arena
        /// runs and referenced ranges in message order.
        struct Gather {
            var parts: [GatherList.Part] = []
            var keepAlive: [Tensor] = []
            var runStart = 0
        }
        var gather: Gather?

        /// Gather mode: appends `src` (owned by `owner`) as a part of its own.
        mutating func reference(_ src: UnsafeRawBufferPointer, owner: Tensor) {
            flushRun()
            gather!.parts.append(GatherList.Part(base: src.baseAddress!, count: src.count))
            gather!.keepAlive.append(owner)
        }

        /// Gather mode: closes the arena run written since the last part.
        mutating func flushRun() {
            guard var g = gather else { return }
            if position > g.runStart {
                g.parts.append(GatherList.Part(base: UnsafeRawPointer(base + g.runStart), count: position - g.runStart))
                g.runStart = position
            }
            gather = g
        }

        mutating func tag(_ field: UInt64, _ type: WireType) { varint(field << 3 | type.rawValue) }

        mutating func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                base.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: position, as: UInt8.self)
                position += 1
                v >>= 7
            }
            base.storeBytes(of: UInt8(v), toByteOffset: position, as: UInt8.self)
            position += 1
        }

        mutating func fixed64(_ value: UInt64) {
            base.storeBytes(of: value.littleEndian, toByteOffset: position, as: UInt64.self)
            position += 8
        }

        mutating func bytes(_ src: UnsafeRawBufferPointer) {
            guard src.count > 0 else { return }
            precondition(position + src.count <= end, "SampleWire: write past the end of the buffer")
            (base + position).copyMemory(from: src.baseAddress!, byteCount: src.count)
            position += src.count
        }
    }
}

/// The encoded bytes of a `SampleResponse`, as a sequence that writes itself into the
/// destination buffer: `_copyContents(initializing:)` (how `Array`, `ByteBuffer` and the other
/// standard collections copy a sequence: `underestimatedCount` bytes, then the rest from the
/// iterator) encodes straight into the buffer being initialised. The iterator (any other
/// use) encodes into an array first and yields its bytes.
struct EncodedSamples: Sequence {
    let samples: [ReplaySample]
    let itemSizes: [Int]
    let total: Int

    init(_ samples: [ReplaySample]) {
        self.samples = samples
        (itemSizes, total) = SampleWire.sizes(samples)
    }

    var underestimatedCount: Int { total }

    func makeIterator() -> IndexingIterator<[UInt8]> {
        var bytes = [UInt8](repeating: 0, count: total)
        bytes.withUnsafeMutableBytes { SampleWire.write(samples, itemSizes: itemSizes, into: $0) }
        return bytes.makeIterator()
    }

    func _copyContents(initializing buffer: UnsafeMutableBufferPointer<UInt8>) -> (IndexingIterator<[UInt8]>, Int) {
        let done = [UInt8]().makeIterator()
        guard buffer.count >= total else {
            // Not room for all of it: the generic path (copies from the iterator).
            var it = makeIterator()
            var n = 0
            while n < buffer.count, let b = it.next() { buffer[n] = b; n += 1 }
            return (it, n)
        }
        SampleWire.write(samples, itemSizes: itemSizes,
                         into: UnsafeMutableRawBufferPointer(start: buffer.baseAddress, count: total))
        return (done, total)
    }
}

/// Validated dimensions of a wire tensor: each in 0...Int32.max, their product times the
/// dtype's size equal to `byteCount`; throws `.invalidArgument` naming `what` otherwise.
func checkedShape(_ shape: [Int64], dtype: DType, byteCount: Int, what: @autoclosure () -> String) throws(ReplayError) -> [Int] {
    var dims: [Int] = []
    dims.reserveCapacity(shape.count)
    var elements = 1
    for d in shape {
        guard d >= 0, d <= Int64(Int32.max) else {
            throw ReplayError(.invalidArgument, "\(what()): shape \(shape) has dimension \(d), expected 0...\(Int32.max)")
        }
        dims.append(Int(d))
        let (p, overflow) = elements.multipliedReportingOverflow(by: Int(d))
        guard !overflow else { throw ReplayError(.invalidArgument, "\(what()): shape \(shape) is too large") }
        elements = p
    }
    let expected = elements.multipliedReportingOverflow(by: dtype.byteSize)
    guard !expected.overflow, byteCount == expected.partialValue else {
        throw ReplayError(.invalidArgument,
                          "\(what()): \(byteCount) bytes of data, expected \(expected.partialValue) for \(dtype) shape \(dims)")
    }
    return dims
}

/// Serializes a batch of samples as a `SampleResponse` (server side of Sample).
public struct SampleBatchSerializer: MessageSerializer {
    public typealias Message = [ReplaySample]
    public init() {}
    public func serialize<Bytes: GRPCContiguousBytes>(_ message: [ReplaySample]) throws -> Bytes {
        SampleWire.encode(message)
    }
}

/// Deserializes a `SampleResponse` into samples of `table` (client side of Sample).
public struct SampleBatchDeserializer: MessageDeserializer {
    public typealias Message = [ReplaySample]
    /// The table the samples are attributed to (`ReplayItem.table`).
    public let table: String
    /// Whether large columns are tensors over the received message's bytes instead of
    /// copies (see `SampleWire.decode`).
    public let adoptMessageBytes: Bool
    public init(table: String, adoptMessageBytes: Bool = true) {
        self.table = table
        self.adoptMessageBytes = adoptMessageBytes
    }
    public func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [ReplaySample] {
        do {
            return try SampleWire.decode(serializedMessageBytes, table: table, adoptMessageBytes: adoptMessageBytes)
        } catch {
            throw RPCError(error)
        }
    }
}
