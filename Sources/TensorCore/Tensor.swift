import TensorKernels

/// Where a tensor's memory lives. CPU only for now; the seam is kept for a GPU later.
public enum Device: String, Sendable, Codable, CustomStringConvertible {
    case cpu
    public var description: String { rawValue }
}

/// An n-dimensional array with value semantics and reverse-mode autograd.
///
/// Storage is shared between copies and views until one of them is mutated
/// (copy-on-write): `var b = a; b.add_(1)` leaves `a` unchanged. Views (`reshape`,
/// `transpose`, `narrow`, ...) share storage and differ only in shape, strides and
/// offset. A tensor that requires grad carries a `GradNode`; copies share it.
public struct Tensor: Sendable {
    @usableFromInline var storage: TensorStorage
    /// Extent of each dimension.
    public internal(set) var shape: [Int]
    /// Element stride of each dimension (0 for broadcast dimensions).
    public internal(set) var strides: [Int]
    /// Element offset of the first element in `storage`.
    public internal(set) var offset: Int
    /// Element type.
    public let dtype: DType
    /// Device holding the storage.
    public var device: Device { .cpu }
    /// The autograd node that produced this tensor, or its leaf node.
    public internal(set) var gradNode: GradNode?

    @usableFromInline
    init(storage: TensorStorage, shape: [Int], strides: [Int], offset: Int, dtype: DType, gradNode: GradNode? = nil) {
        self.storage = storage
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.dtype = dtype
        self.gradNode = gradNode
    }

    /// An uninitialised dense tensor (internal: ops fill it at once).
    @usableFromInline
    init(uninitializedShape shape: [Int], dtype: DType) {
        for s in shape { precondition(s >= 0, "Tensor: negative dimension in shape \(shapeString(shape))") }
        let n = elementCount(shape)
        self.init(storage: TensorStorage(byteCount: n * dtype.byteSize), shape: shape,
                  strides: contiguousStrides(shape), offset: 0, dtype: dtype)
    }

    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// Number of elements.
    public var count: Int { elementCount(shape) }
    /// Whether elements are dense in row-major order.
    public var isContiguous: Bool { TensorKernels.isContiguous(shape: shape, strides: strides) }
    /// The storage block (shared with views); used by memory reports and collectives.
    public var storageBlock: TensorStorage { storage }

    /// Normalises a possibly negative dimension index, trapping with the op's name if out of range.
    @inlinable
    public func normalizedDim(_ dim: Int, op: String) -> Int {
        let r = Swift.max(rank, 1)
        let d = dim < 0 ? dim + r : dim
        precondition(d >= 0 && d < r, "\(op): dimension \(dim) out of range for a tensor of rank \(rank) (shape \(shapeString(shape)))")
        return d
    }
}

// MARK: - Raw access

extension Tensor {
    /// Runs `body` with a typed pointer to the storage base (element 0 of storage, not of the view:
    /// add `offset`). Traps if `T` does not match the dtype.
    @inlinable
    public func withStoragePointer<T: TensorElement, R>(_ type: T.Type, _ body: (UnsafePointer<T>) throws -> R) rethrows -> R {
        precondition(T.dtype == dtype, "withStoragePointer: tensor has dtype \(dtype), accessed as \(T.dtype)")
        return try body(storage.pointer.assumingMemoryBound(to: T.self))
    }

    /// Mutable access to the storage base; copies the storage first if it is shared.
    @inlinable
    public mutating func withMutableStoragePointer<T: TensorElement, R>(_ type: T.Type, _ body: (UnsafeMutablePointer<T>) throws -> R) rethrows -> R {
        precondition(T.dtype == dtype, "withMutableStoragePointer: tensor has dtype \(dtype), accessed as \(T.dtype)")
        makeUniqueDense()
        return try body(storage.pointer.assumingMemoryBound(to: T.self))
    }

    /// Makes the storage uniquely owned. A shared or non-dense tensor is copied to a dense one;
    /// so is one over adopted bytes (`TensorStorage.isAdopted`: never written in place).
    @usableFromInline
    mutating func makeUniqueDense() {
        if isKnownUniquelyReferenced(&storage) && !storage.isAdopted && storage.byteCount == count * dtype.byteSize && offset == 0 && isContiguous { return }
        let copy = Memory.withTag(storage.tag) { self.contiguousCopy() }  // the copy is charged like the original
        storage = copy.storage
        strides = copy.strides
        offset = 0
    }

    /// Makes the storage uniquely owned, keeping the layout when it is already unique
    /// (so in-place ops on unique strided tensors stay in place). Adopted storage is always
    /// copied (`TensorStorage.isAdopted`).
    @usableFromInline
    mutating func makeUnique() {
        if isKnownUniquelyReferenced(&storage) && !storage.isAdopted { return }
        let copy = Memory.withTag(storage.tag) { self.contiguousCopy() }
        storage = copy.storage
        strides = copy.strides
        offset = 0
    }

    /// A dense copy with fresh storage (no autograd).
    @usableFromInline
    func contiguousCopy() -> Tensor {
        var out = Tensor(uninitializedShape: shape, dtype: dtype)
        let dstStrides = out.strides
        copyRaw(width: dtype.byteSize, storage.pointer, srcStrides: strides, srcOffset: offset,
                out.storage.pointer, dstStrides: dstStrides, dstOffset: 0, shape: shape)
        out.gradNode = nil
        return out
    }

    /// Elements in row-major order converted to `T` (via Double for cross-type reads).
    public func scalars<T: TensorElement>(as type: T.Type = T.self) -> [T] {
        if T.dtype == dtype {
            let c = isContiguous && offset >= 0 ? self : contiguousCopy()
            return c.withStoragePointer(T.self) { p in Array(UnsafeBufferPointer(start: p + c.offset, count: count)) }
        }
        return doubles().map { T(loomDouble: $0) }
    }

    /// Elements in row-major order as Double.
    public func doubles() -> [Double] {
        let c = contiguousCopy()
        var result = [Double](repeating: 0, count: count)
        dispatchAnyType(dtype) { (t: any TensorElement.Type) in
            func read<T: TensorElement>(_: T.Type) {
                let p = c.storage.pointer.assumingMemoryBound(to: T.self)
                for i in 0..<result.count { result[i] = p[i].loomDouble }
            }
            read(t)
        }
        return result
    }

    /// The single element of a one-element tensor, as Double.
    public func item() -> Double {
        precondition(count == 1, "item: tensor of shape \(shapeString(shape)) has \(count) elements, expected 1")
        return doubles()[0]
    }

    /// The single element of a one-element tensor, as `T`.
    public func item<T: TensorElement>(_ type: T.Type) -> T { T(loomDouble: item()) }
}


/// Copies a strided region between raw buffers, specialised per element width.
@usableFromInline
func copyRaw(width: Int, _ src: UnsafeRawPointer, srcStrides: [Int], srcOffset: Int,
             _ dst: UnsafeMutableRawPointer, dstStrides: [Int], dstOffset: Int, shape: [Int]) {
    switch width {
    case 1: copyStrided(src.assumingMemoryBound(to: UInt8.self), srcStrides: srcStrides, srcOffset: srcOffset,
                        dst.assumingMemoryBound(to: UInt8.self), dstStrides: dstStrides, dstOffset: dstOffset, shape: shape)
    case 2: copyStrided(src.assumingMemoryBound(to: UInt16.self), srcStrides: srcStrides, srcOffset: srcOffset,
                        dst.assumingMemoryBound(to: UInt16.self), dstStrides: dstStrides, dstOffset: dstOffset, shape: shape)
    case 4: copyStrided(src.assumingMemoryBound(to: UInt32.self), srcStrides: srcStrides, srcOffset: srcOffset,
                        dst.assumingMemoryBound(to: UInt32.self), dstStrides: dstStrides, dstOffset: dstOffset, shape: shape)
    default: copyStrided(src.assumingMemoryBound(to: UInt64.self), srcStrides: srcStrides, srcOffset: srcOffset,
                         dst.assumingMemoryBound(to: UInt64.self), dstStrides: dstStrides, dstOffset: dstOffset, shape: shape)
    }
}

/// Calls `body` with the Swift element type of `dtype`.
@inlinable
func dispatchAnyType(_ dtype: DType, _ body: (any TensorElement.Type) -> Void) {
    switch dtype {
    case .float32: body(Float.self)
    case .float64: body(Double.self)
    case .float16: body(Float16.self)
    case .bfloat16: body(BFloat16.self)
    case .int32: body(Int32.self)
    case .int64: body(Int64.self)
    case .uint8: body(UInt8.self)
    case .bool: body(Bool.self)
    }
}

// MARK: - Construction from Swift values

extension Tensor {
    /// A tensor holding `values` in row-major order with the given shape.
    ///
    /// Throws when `values.count` differs from the element count of `shape`, or a
    /// dimension is negative.
    public init<T: TensorElement>(_ values: [T], shape: [Int]) throws(TensorError) {
        for s in shape where s < 0 {
            throw TensorError(.shape, op: "Tensor", "shape \(shapeString(shape)) has a negative dimension")
        }
        let n = elementCount(shape)
        guard n == values.count else {
            throw TensorError(.count, op: "Tensor", "\(values.count) values do not fill shape \(shapeString(shape)) (\(n) elements)")
        }
        self.init(uninitializedShape: shape, dtype: T.dtype)
        let p = storage.pointer.assumingMemoryBound(to: T.self)
        values.withUnsafeBufferPointer { b in
            if let base = b.baseAddress { p.initialize(from: base, count: n) }
        }
    }

    /// A 1-D tensor holding `values`.
    public init<T: TensorElement>(_ values: [T]) {
        try! self.init(values, shape: [values.count])
    }

    /// A 0-d (scalar) tensor.
    public init<T: TensorElement>(scalar: T) {
        try! self.init([scalar], shape: [])
    }

    /// A tensor from nested rows (2-D), checking every row has the same length.
    public init<T: TensorElement>(rows: [[T]]) throws(TensorError) {
        let cols = rows.first?.count ?? 0
        for (i, r) in rows.enumerated() where r.count != cols {
            throw TensorError(.shape, op: "Tensor", "row \(i) has \(r.count) values, expected \(cols) like row 0")
        }
        try self.init(rows.flatMap { $0 }, shape: [rows.count, cols])
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let values = count <= 64 ? doubles() : Array(doubles().prefix(64))
        let body = values.map { dtype.isFloatingPoint ? String(format: "%.4g", $0) : String(Int64($0)) }.joined(separator: ", ")
        return "Tensor(\(shapeString(shape)), \(dtype)\(requiresGrad ? ", requiresGrad" : ""): [\(body)\(count > 64 ? ", ..." : "")])"
    }
}

#if canImport(Foundation)
import Foundation
#endif
