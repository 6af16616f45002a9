/// Scans (prefix sums) along one dimension of a strided tensor.

/// Inclusive prefix sum along `dim`: `dst[..., j, ...] = Σ_{i ≤ j} src[..., i, ...]`.
///
/// With `reverse` the sum runs from the end: `dst[..., j, ...] = Σ_{i ≥ j} src[..., i, ...]`
/// (the gradient of a forward cumsum). `dst` is dense row-major with the source's shape.
/// The output is filled slab by slab in memory order (slab j = previous slab + source
/// slab j), so a scan over dim 0 of a contiguous matrix streams through memory instead of
/// walking columns. Complexity: O(elements), one pass.
@inlinable
public func cumsumAlongDim<T: AdditiveArithmetic>(
    _ src: UnsafePointer<T>, shape: [Int], strides: [Int], offset: Int, dim: Int,
    _ dst: UnsafeMutablePointer<T>, reverse: Bool = false
) {
    precondition(dim >= 0 && dim < shape.count, "cumsumAlongDim: dimension \(dim) out of range for shape \(shape)")
    if elementCount(shape) == 0 { return }
    let n = shape[dim]
    let dstStrides = contiguousStrides(shape)
    let st = strides[dim], dst_st = dstStrides[dim]
    // First slab (j = 0, or n - 1 when reversed) is a copy.
    var first = shape
    first[dim] = 1
    let j0 = reverse ? n - 1 : 0
    copyStrided(src, srcStrides: strides, srcOffset: offset + j0 * st, dst, dstStrides: dstStrides, dstOffset: j0 * dst_st, shape: first)
    if n == 1 { return }
    // Remaining slabs in visiting order; row-major order visits slab j - 1 (in scan
    // order) before slab j, so `prev` is always final when read.
    var rest = shape
    rest[dim] = n - 1
    var sStr = strides, dStr = dstStrides, pStr = dstStrides
    let sOff: Int, dOff: Int, pOff: Int
    if reverse {
        sStr[dim] = -st; dStr[dim] = -dst_st; pStr[dim] = -dst_st
        sOff = offset + (n - 2) * st; dOff = (n - 2) * dst_st; pOff = (n - 1) * dst_st
    } else {
        sOff = offset + st; dOff = dst_st; pOff = 0
    }
    let prev = UnsafePointer(dst)
    forEachStridedRow(shape: rest, strides: [sStr, dStr, pStr], offsets: [sOff, dOff, pOff]) { offs, count, inner in
        let s = src + offs[0], d = dst + offs[1], p = prev + offs[2]
        let ss = inner[0], ds = inner[1], ps = inner[2]
        if ss == 1 && ds == 1 && ps == 1 {
            for i in 0..<count { d[i] = p[i] + s[i] }
        } else {
            for i in 0..<count { d[i * ds] = p[i * ps] + s[i * ss] }
        }
    }
}
