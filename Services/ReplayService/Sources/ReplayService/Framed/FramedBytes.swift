import GRPCCore
import Synchronization
import TensorCore

/// A block of bytes the framed transport owns: heap memory aligned to 64 bytes, freed when
/// the last reference goes.
///
/// `@unchecked Sendable`: a buffer is written by one owner before it is shared (a received
/// payload before it is handed on, a message before it is queued), and read-only afterwards
/// (`FramedBytes.withUnsafeMutableBytes` writes only into a buffer it holds the only
/// reference to).
public final class WireBuffer: @unchecked Sendable {
    /// The first byte.
    public let base: UnsafeMutableRawPointer
    /// Bytes allocated.
    public let capacity: Int

    /// An uninitialised buffer of `capacity` bytes.
    public init(capacity: Int) {
        precondition(capacity >= 0, "WireBuffer: negative capacity \(capacity)")
        self.capacity = capacity
        base = .allocate(byteCount: Swift.max(capacity, 1), alignment: 64)
    }

    deinit { base.deallocate() }
}

/// The message bytes of `FramedClientTransport` and `FramedServerTransport`.
///
/// Either one contiguous range of a `WireBuffer` (what the transport receives: the payload
/// is read from the socket straight into a buffer of its exact size, so a deserializer can
/// keep tensors over it; see `SampleWire.decode`), or a gather list: small runs of bytes in
/// an arena plus ranges of memory owned by other objects (tensor storage), which the
/// transport hands to `writev` without copying them (see `SampleWire.encode`). A gather list
/// becomes contiguous (one copy, cached) only when someone asks for contiguous bytes.
public struct FramedBytes: GRPCContiguousBytes, Sendable {
    enum Storage: Sendable {
        case empty
        case contiguous(WireBuffer, offset: Int)
        case gather(GatherList)
    }

    var storage: Storage
    public private(set) var count: Int

    /// `count` bytes starting at `offset` of `buffer` (which must hold them).
    public init(buffer: WireBuffer, offset: Int = 0, count: Int) {
        precondition(offset >= 0 && count >= 0 && offset + count <= buffer.capacity,
                     "FramedBytes: range \(offset)..<\(offset + count) outside a buffer of \(buffer.capacity) bytes")
        storage = .contiguous(buffer, offset: offset)
        self.count = count
    }

    init(gather: GatherList) {
        storage = .gather(gather)
        count = gather.count
    }

    public init(repeating byte: UInt8, count: Int) {
        let buffer = WireBuffer(capacity: count)
        buffer.base.initializeMemory(as: UInt8.self, repeating: byte, count: count)
        self.init(buffer: buffer, count: count)
    }

    /// Copies `sequence`; a sequence that knows its size (`underestimatedCount`) and writes
    /// itself in `_copyContents` (`EncodedSamples`, arrays) is written straight into the
    /// new buffer.
    public init<Bytes: Sequence>(_ sequence: Bytes) where Bytes.Element == UInt8 {
        let guess = sequence.underestimatedCount
        let buffer = WireBuffer(capacity: guess)
        let typed = buffer.base.bindMemory(to: UInt8.self, capacity: Swift.max(guess, 1))
        var (rest, n) = sequence._copyContents(initializing: UnsafeMutableBufferPointer(start: typed, count: guess))
        var tail: [UInt8] = []
        while let b = rest.next() { tail.append(b) }
        if tail.isEmpty {
            self.init(buffer: buffer, count: n)
            return
        }
        let all = WireBuffer(capacity: n + tail.count)
        all.base.copyMemory(from: buffer.base, byteCount: n)
        tail.withUnsafeBytes { (all.base + n).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        n += tail.count
        self.init(buffer: all, count: n)
    }

    /// The buffer and offset when the bytes are one range of a `WireBuffer` (what the
    /// transport received), nil for a gather list.
    public var contiguousBuffer: (buffer: WireBuffer, offset: Int)? {
        if case .contiguous(let b, let o) = storage { return (b, o) }
        return nil
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .empty:
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        case .contiguous(let b, let o):
            return try body(UnsafeRawBufferPointer(start: b.base + o, count: count))
        case .gather(let g):
            let flat = g.flattened()
            return try body(UnsafeRawBufferPointer(start: flat.base, count: count))
        }
    }

    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        makeUniqueContiguous()
        guard case .contiguous(let b, let o) = storage else { return try body(UnsafeMutableRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeMutableRawBufferPointer(start: b.base + o, count: count))
    }

    /// Makes `storage` a buffer only this value references (copying when shared or gathered).
    private mutating func makeUniqueContiguous() {
        if case .contiguous(var b, let o) = storage {
            storage = .empty
            let unique = isKnownUniquelyReferenced(&b)
            storage = .contiguous(b, offset: o)
            if unique { return }
        }
        let copy = WireBuffer(capacity: count)
        withUnsafeBytes { src in
            if let s = src.baseAddress, src.count > 0 { copy.base.copyMemory(from: s, byteCount: src.count) }
        }
        storage = count == 0 ? .empty : .contiguous(copy, offset: 0)
    }

    /// Calls `body` with each run of bytes in order (one for contiguous bytes).
    func forEachPart(_ body: (UnsafeRawPointer, Int) -> Void) {
        switch storage {
        case .empty: return
        case .contiguous(let b, let o): if count > 0 { body(b.base + o, count) }
        case .gather(let g): for p in g.parts where p.count > 0 { body(p.base, p.count) }
        }
    }

    /// How many runs `forEachPart` calls back with.
    var partCount: Int {
        switch storage {
        case .empty: return 0
        case .contiguous: return count > 0 ? 1 : 0
        case .gather(let g): return g.parts.count
        }
    }
}

/// Runs of bytes sent one after another without being joined: runs of `arena` and ranges
/// of memory owned by `keepAlive`'s values (tensors, `Data`).
///
/// `@unchecked Sendable`: the parts and the arena are written before the list is built and
/// never after; `flattened` is guarded by a mutex.
final class GatherList: @unchecked Sendable {
    struct Part {
        let base: UnsafeRawPointer
        let count: Int
    }

    let parts: [Part]
    let count: Int
    /// Owners of the memory the parts point into.
    private let arena: WireBuffer
    private let keepAlive: [any Sendable]
    private let flat = Mutex<WireBuffer?>(nil)

    init(parts: [Part], arena: WireBuffer, keepAlive: [any Sendable]) {
        self.parts = parts
        self.arena = arena
        self.keepAlive = keepAlive
        count = parts.reduce(0) { $0 + $1.count }
    }

    /// The parts joined into one buffer (made on first use, then kept).
    func flattened() -> WireBuffer {
        flat.withLock { f in
            if let f { return f }
            let b = WireBuffer(capacity: count)
            var at = 0
            for p in parts where p.count > 0 {
                (b.base + at).copyMemory(from: p.base, byteCount: p.count)
                at += p.count
            }
            f = b
            return b
        }
    }
}
