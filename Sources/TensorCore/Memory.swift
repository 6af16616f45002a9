import Synchronization
import TensorKernels

/// What a block of tensor memory is for; every allocation is charged to one tag.
public enum MemoryTag: String, Sendable, CaseIterable, Codable {
    case parameters, gradients, optimizerState, activations, workspace, other
}

/// A snapshot of the allocator's accounting.
///
/// `current` is live bytes now; `peak` the largest `current` since the last
/// `Memory.resetPeak()`. Per-tag peaks are each tag's own maximum (they need not
/// occur at the same moment, so they may sum to more than the total peak).
public struct MemoryStats: Sendable, Equatable, CustomStringConvertible {
    public var current: Int
    public var peak: Int
    public var currentByTag: [MemoryTag: Int]
    public var peakByTag: [MemoryTag: Int]
    /// Number of live allocations.
    public var liveAllocations: Int
    /// Allocations made since process start.
    public var totalAllocations: Int

    public func current(_ tag: MemoryTag) -> Int { currentByTag[tag] ?? 0 }
    public func peak(_ tag: MemoryTag) -> Int { peakByTag[tag] ?? 0 }

    public var description: String {
        var lines = ["memory: current \(formatBytes(current)), peak \(formatBytes(peak)), live allocations \(liveAllocations)"]
        for tag in MemoryTag.allCases {
            lines.append("  \(tag.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0)) current \(formatBytes(current(tag))), peak \(formatBytes(peak(tag)))")
        }
        return lines.joined(separator: "\n")
    }
}

/// Human-readable byte count (binary units).
public func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(bytes)
    var u = 0
    while abs(v) >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(bytes) B" : String(format: "%.2f %@", v, units[u])
}

#if canImport(Foundation)
import Foundation
#endif

/// The allocator's accounting: every `TensorStorage` reports here when it is created,
/// retagged and freed. Thread-safe (one mutex; allocations are coarse-grained).
public enum Memory {
    struct State {
        var current = 0
        var peak = 0
        var currentByTag: [MemoryTag: Int] = [:]
        var peakByTag: [MemoryTag: Int] = [:]
        var live = 0
        var total = 0
        /// Events since `startTimeline()`, or nil when not recording.
        var timeline: [MemoryEvent]?
    }
    static let state = Mutex(State())

    /// The tag new allocations on this task/thread are charged to (default `.other`).
    @TaskLocal public static var currentTag: MemoryTag = .other

    /// The name of the code allocating now (e.g. the module running its forward), recorded
    /// with each allocation on a timeline so reports can attribute bytes to layers.
    @TaskLocal public static var owner: String?

    /// Runs `body` with allocations charged to `tag`.
    public static func withTag<R>(_ tag: MemoryTag, _ body: () throws -> R) rethrows -> R {
        try $currentTag.withValue(tag) { try body() }
    }

    /// The accounting now.
    public static func stats() -> MemoryStats {
        state.withLock { s in
            MemoryStats(current: s.current, peak: s.peak, currentByTag: s.currentByTag, peakByTag: s.peakByTag,
                        liveAllocations: s.live, totalAllocations: s.total)
        }
    }

    /// Sets every peak (total and per tag) to the current value.
    public static func resetPeak() {
        state.withLock { s in
            s.peak = s.current
            s.peakByTag = s.currentByTag
        }
    }

    /// Charges a new block; returns its serial number (for timelines).
    static func allocated(_ bytes: Int, tag: MemoryTag) -> Int {
        let owner = Memory.owner
        return state.withLock { s in
            s.current += bytes
            if s.current > s.peak { s.peak = s.current }
            let t = (s.currentByTag[tag] ?? 0) + bytes
            s.currentByTag[tag] = t
            if t > (s.peakByTag[tag] ?? 0) { s.peakByTag[tag] = t }
            s.live += 1
            s.total += 1
            if s.timeline != nil { s.record(bytes, tag: tag, label: nil, id: s.total, owner: owner) }
            return s.total
        }
    }

    static func freed(_ bytes: Int, tag: MemoryTag, serial: Int) {
        state.withLock { s in
            s.current -= bytes
            s.currentByTag[tag] = (s.currentByTag[tag] ?? 0) - bytes
            s.live -= 1
            if s.timeline != nil { s.record(-bytes, tag: tag, label: nil, id: serial, owner: nil) }
        }
    }

    static func retagged(_ bytes: Int, from: MemoryTag, to: MemoryTag) {
        if from == to { return }
        state.withLock { s in
            s.currentByTag[from] = (s.currentByTag[from] ?? 0) - bytes
            let t = (s.currentByTag[to] ?? 0) + bytes
            s.currentByTag[to] = t
            if t > (s.peakByTag[to] ?? 0) { s.peakByTag[to] = t }
        }
    }
}

/// A block of tensor memory: 64-byte aligned, accounted in `Memory` from birth to death.
///
/// `@unchecked Sendable` by design: the bytes are written only while the storage is
/// being filled by the op that created it, or through a `Tensor` that holds the only
/// reference (copy-on-write); shared storage is read-only. `tag` is guarded by a mutex.
///
/// ## Released bytes (parameters gathered on demand)
/// `releaseBytes(note:)` frees the bytes but keeps the object, so every tensor and view
/// over it (including those captured by autograd closures) stays valid as a *handle*;
/// `rematerialize()` later allocates fresh bytes of the same size for the same object,
/// and the owner fills them (e.g. with all-gathered values). This is what fully sharded
/// data parallelism (ZeRO stage 3, PyTorch FSDP's resizing of a parameter's storage to
/// zero and back) needs: a VJP that captured a weight sees the gathered values again in
/// backward. While released the block is charged nothing (`Memory` sees a free, and a new
/// allocation with a new `serial` when it comes back), and reading `pointer` traps with a
/// message naming the storage and `note` (the owner says what it is, e.g. a parameter
/// name) instead of reading freed memory. Release and rematerialise only from the thread
/// that owns the storage, while no op or collective is using its bytes.
///
/// ## Adopted bytes (memory owned by someone else)
/// `init(adopting:byteCount:owner:tag:)` builds a storage over bytes it did not allocate
/// (e.g. a received network message), keeping `owner` alive instead: deinit releases the
/// owner rather than deallocating, so the bytes live exactly as long as the last tensor or
/// view over this storage. Such a block:
/// - is charged to `Memory` under its tag like any other (the bytes are real and live);
///   only `byteCount` is charged, although the owner may keep more alive (a whole message);
/// - is not 64-byte aligned: only its element alignment is guaranteed, which the caller
///   checks (`Tensor.canAdopt(_:dtype:)`; kernels use unaligned SIMD loads);
/// - is read-only: the owner's memory may be shared with others (other slices of one
///   buffer), so `isAdopted` storage is never written in place, even when uniquely
///   referenced. The first mutation through a `Tensor` copies it into fresh owned storage
///   (`Tensor.makeUnique`), as for shared storage; code writing through `pointer` directly
///   must check `isAdopted` itself;
/// - `releaseBytes(note:)` lets go of the owner (the accounting sees a free) and
///   `rematerialize()` allocates fresh *owned*, 64-byte-aligned bytes (`isAdopted` is then
///   false and the block is writable again like any other).
public final class TensorStorage: @unchecked Sendable {
    @usableFromInline var _pointer: UnsafeMutableRawPointer
    @usableFromInline var _released = false
    /// Whether `_pointer` points into memory kept alive by `adoptedOwner` (never written in place).
    @usableFromInline var _adopted = false
    /// The object keeping adopted bytes alive; nil for owned (or released) bytes.
    private var adoptedOwner: AnyObject?
    private var releaseNote = ""
    public let byteCount: Int
    private let tagBox: Mutex<MemoryTag>
    /// Allocation serial number (1, 2, ...), unique in the process; a rematerialised block
    /// gets a new one (it is a new allocation for timelines).
    public private(set) var serial: Int

    /// Allocates `byteCount` uninitialised bytes charged to `tag`.
    public init(byteCount: Int, tag: MemoryTag = Memory.currentTag) {
        precondition(byteCount >= 0, "TensorStorage: negative byte count \(byteCount)")
        self.byteCount = byteCount
        self._pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        self.tagBox = Mutex(tag)
        self.serial = Memory.allocated(byteCount, tag: tag)
    }

    /// A storage over `byteCount` bytes at `pointer` that it does not own: `owner` is kept
    /// alive (and released in deinit) instead of the bytes being deallocated. The bytes must
    /// stay valid and unchanged while `owner` lives; they are charged to `tag` like an
    /// allocation. See "Adopted bytes" above (read-only, element alignment only).
    public init(adopting pointer: UnsafeRawPointer, byteCount: Int, owner: some AnyObject & Sendable,
                tag: MemoryTag = Memory.currentTag) {
        precondition(byteCount >= 0, "TensorStorage(adopting:): negative byte count \(byteCount)")
        self.byteCount = byteCount
        self._pointer = UnsafeMutableRawPointer(mutating: pointer)
        self._adopted = true
        self.adoptedOwner = owner
        self.tagBox = Mutex(tag)
        self.serial = Memory.allocated(byteCount, tag: tag)
    }

    /// Whether the bytes belong to another object (see `init(adopting:byteCount:owner:tag:)`):
    /// such a block is read-only and is copied on the first mutation through a tensor.
    @inlinable
    public var isAdopted: Bool { _adopted }

    /// The first byte. Traps, naming this storage, when the bytes are released.
    @inlinable
    public var pointer: UnsafeMutableRawPointer {
        if _slowPath(_released) { readOfReleasedBytes() }
        return _pointer
    }

    /// Whether the bytes are released (see `releaseBytes(note:)`).
    public var isReleased: Bool { _released }

    @usableFromInline
    func readOfReleasedBytes() -> Never {
        // fatalError, not precondition: the message must survive -O builds.
        fatalError("TensorStorage #\(serial) (\(byteCount) bytes, \(tag.rawValue)): an op read its bytes while they are released (\(releaseNote)); its values exist only between rematerialize() and releaseBytes() (the backtrace names the op)")
    }

    /// Frees the bytes, keeping this object (and every tensor viewing it) alive as a
    /// handle; the accounting sees a free. Reading `pointer` then traps with a message
    /// that includes `note` (say what the block is and when it is available). O(1).
    public func releaseBytes(note: String) {
        if _released { fatalError("TensorStorage #\(serial): releaseBytes: already released (\(releaseNote)); now: \(note)") }
        Memory.freed(byteCount, tag: tag, serial: serial)
        if _adopted {
            adoptedOwner = nil  // the owner's bytes are its business
            _adopted = false
        } else {
            _pointer.deallocate()
        }
        _released = true
        releaseNote = note
    }

    /// Allocates fresh, uninitialised bytes of the same size for a released block
    /// (charged to its tag, with a new `serial`); the caller fills them. The new bytes are
    /// owned and 64-byte aligned, also when the block had adopted its bytes before.
    public func rematerialize() {
        if !_released { fatalError("TensorStorage #\(serial): rematerialize: the bytes are not released") }
        _pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        serial = Memory.allocated(byteCount, tag: tag)
        _released = false
        releaseNote = ""
    }

    /// The tag this block is charged to.
    public var tag: MemoryTag { tagBox.withLock { $0 } }

    /// Moves this block's bytes to another tag (e.g. a fresh tensor becoming a parameter).
    /// A released block only changes its tag (it is charged nothing).
    public func retag(_ newTag: MemoryTag) {
        tagBox.withLock { t in
            if !_released { Memory.retagged(byteCount, from: t, to: newTag) }
            t = newTag
        }
    }

    deinit {
        guard !_released else { return }
        Memory.freed(byteCount, tag: tagBox.withLock { $0 }, serial: serial)
        // Adopted bytes: releasing `adoptedOwner` (with this object) is all there is to do.
        if !_adopted { _pointer.deallocate() }
    }
}

extension Tensor {
    /// Whether a tensor of `dtype` can adopt bytes starting at `pointer`: it must be aligned
    /// to the element size (every dtype's alignment is its size). Otherwise copy the bytes.
    @inlinable
    public static func canAdopt(_ pointer: UnsafeRawPointer, dtype: DType) -> Bool {
        Int(bitPattern: pointer) & (dtype.byteSize - 1) == 0
    }

    /// A dense tensor over `bytes` without copying them, keeping `owner` alive for as long as
    /// this tensor, its copies or its views live (`TensorStorage(adopting:...)`). The bytes
    /// are read-only for the tensor: the first mutation copies them into fresh storage.
    /// `bytes` must hold exactly the tensor's bytes (little-endian, as on this machine) and
    /// start at an address aligned for `dtype` (check with `canAdopt(_:dtype:)`); a tensor
    /// without elements adopts nothing (it gets an empty storage of its own).
    public init(adopting bytes: UnsafeRawBufferPointer, shape: [Int], dtype: DType, owner: some AnyObject & Sendable,
                tag: MemoryTag = Memory.currentTag) {
        for s in shape { precondition(s >= 0, "Tensor(adopting:): negative dimension in shape \(shapeString(shape))") }
        let n = elementCount(shape)
        precondition(bytes.count == n * dtype.byteSize,
                     "Tensor(adopting:): \(bytes.count) bytes for \(dtype) \(shapeString(shape)), expected \(n * dtype.byteSize)")
        guard let base = bytes.baseAddress, n > 0 else {
            self.init(storage: TensorStorage(byteCount: 0, tag: tag), shape: shape, strides: contiguousStrides(shape),
                      offset: 0, dtype: dtype)
            return
        }
        if !Tensor.canAdopt(base, dtype: dtype) {
            // fatalError, not precondition: the message must survive -O builds.
            fatalError("Tensor(adopting:): address \(base) is not aligned to \(dtype.byteSize) bytes for \(dtype); copy the bytes instead")
        }
        self.init(storage: TensorStorage(adopting: base, byteCount: bytes.count, owner: owner, tag: tag), shape: shape,
                  strides: contiguousStrides(shape), offset: 0, dtype: dtype)
    }
}
