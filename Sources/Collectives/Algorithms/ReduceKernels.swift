import TensorCore
import TensorKernels

extension ReduceOp {
    /// The op the data movement performs: `average` moves as `sum` and is divided after.
    var accumulating: ReduceOp { self == .average ? .sum : self }
}

/// `dst[i] = dst[i] op src[i]` for `count` elements of `dtype` (float32, float64, int32,
/// int64). Integer sums and products wrap on overflow.
func reduceInto(_ dst: UnsafeMutableRawPointer?, _ src: UnsafeRawPointer?, count: Int, dtype: DType, op: ReduceOp) {
    guard count > 0, let dst, let src else { return }
    switch dtype {
    case .float32: reduceFloating(dst.assumingMemoryBound(to: Float.self), src.assumingMemoryBound(to: Float.self), count, op)
    case .float64: reduceFloating(dst.assumingMemoryBound(to: Double.self), src.assumingMemoryBound(to: Double.self), count, op)
    case .int32: reduceInteger(dst.assumingMemoryBound(to: Int32.self), src.assumingMemoryBound(to: Int32.self), count, op)
    case .int64: reduceInteger(dst.assumingMemoryBound(to: Int64.self), src.assumingMemoryBound(to: Int64.self), count, op)
    default: preconditionFailure("reduceInto: dtype \(dtype) has no reduction (checked at issue)")
    }
}

@inline(__always)
private func reduceFloating<T: BinaryFloatingPoint>(_ d: UnsafeMutablePointer<T>, _ s: UnsafePointer<T>, _ n: Int, _ op: ReduceOp) {
    switch op {
    case .sum, .average: for i in 0..<n { d[i] = d[i] + s[i] }
    case .product: for i in 0..<n { d[i] = d[i] * s[i] }
    case .max: for i in 0..<n { let a = d[i], b = s[i]; d[i] = (b > a || a.isNaN) ? (a.isNaN ? a : b) : a }
    case .min: for i in 0..<n { let a = d[i], b = s[i]; d[i] = (b < a || a.isNaN) ? (a.isNaN ? a : b) : a }
    }
}

@inline(__always)
private func reduceInteger<T: FixedWidthInteger>(_ d: UnsafeMutablePointer<T>, _ s: UnsafePointer<T>, _ n: Int, _ op: ReduceOp) {
    switch op {
    case .sum, .average: for i in 0..<n { d[i] = d[i] &+ s[i] }
    case .product: for i in 0..<n { d[i] = d[i] &* s[i] }
    case .max: for i in 0..<n { let b = s[i]; if b > d[i] { d[i] = b } }
    case .min: for i in 0..<n { let b = s[i]; if b < d[i] { d[i] = b } }
    }
}

/// Divides every element by `n` (the `average` epilogue; integer division for ints).
func divideInPlace(_ buffer: CollectiveBuffer, by n: Int) {
    guard buffer.count > 0, let p = buffer.pointer else { return }
    let c = buffer.count
    switch buffer.dtype {
    case .float32: let q = p.assumingMemoryBound(to: Float.self), f = Float(n); for i in 0..<c { q[i] = q[i] / f }
    case .float64: let q = p.assumingMemoryBound(to: Double.self), f = Double(n); for i in 0..<c { q[i] = q[i] / f }
    case .int32: let q = p.assumingMemoryBound(to: Int32.self), f = Int32(n); for i in 0..<c { q[i] = q[i] / f }
    case .int64: let q = p.assumingMemoryBound(to: Int64.self), f = Int64(n); for i in 0..<c { q[i] = q[i] / f }
    default: break
    }
}

/// Bytes per element on the wire for `compression` (float32 payloads).
func wireByteSize(_ compression: WireCompression, dtype: DType) -> Int {
    switch compression {
    case .none: return dtype.byteSize
    case .float16, .bfloat16: return 2
    }
}

/// Encodes `count` Float32 values into the 16-bit wire format (round to nearest even).
func encodeWire(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, count: Int, _ compression: WireCompression) {
    let s = src.assumingMemoryBound(to: Float.self)
    switch compression {
    case .float16: convertFloatToHalf(s, dst.assumingMemoryBound(to: Float16.self), count: count)
    case .bfloat16: convertFloatToBFloat16(s, dst.assumingMemoryBound(to: BFloat16.self), count: count)
    case .none: dst.copyMemory(from: src, byteCount: count * 4)
    }
}

/// Decodes `count` 16-bit wire values into Float32 (exact).
func decodeWire(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, count: Int, _ compression: WireCompression) {
    let d = dst.assumingMemoryBound(to: Float.self)
    switch compression {
    case .float16: convertHalfToFloat(src.assumingMemoryBound(to: Float16.self), d, count: count)
    case .bfloat16: convertBFloat16ToFloat(src.assumingMemoryBound(to: BFloat16.self), d, count: count)
    case .none: dst.copyMemory(from: src, byteCount: count * 4)
    }
}

/// Reusable scratch buffers of one group, by slot: allocating (and page-faulting) tens of
/// MiB per op cost more than the op itself at 64 MiB. Buffers grow, never shrink, and are
/// freed with the group; contents are garbage between uses.
///
/// `@unchecked Sendable`: used only by the group's communication thread (ops run one at a
/// time), so no two threads touch it at once.
final class ScratchPool: @unchecked Sendable {
    private var buffers: [(pointer: UnsafeMutableRawPointer, bytes: Int)?] = Array(repeating: nil, count: 4)

    /// At least `bytes` bytes of slot `slot` (0..<4), 64-byte aligned.
    func get(_ slot: Int, bytes: Int) -> UnsafeMutableRawPointer {
        if let b = buffers[slot], b.bytes >= bytes { return b.pointer }
        buffers[slot]?.pointer.deallocate()
        let size = Swift.max(bytes, 64)
        let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        buffers[slot] = (p, size)
        return p
    }

    deinit { for b in buffers { b?.pointer.deallocate() } }
}

/// A scratch buffer view for the algorithms.
struct Scratch {
    let pointer: UnsafeMutableRawPointer
    init<T: Transport>(_ t: T, slot: Int, bytes: Int) { pointer = t.pool.get(slot, bytes: bytes) }
}
