/// Reductions over any set of dimensions.
///
/// The destination has the source's shape with reduced dims of extent 1 (keepdim
/// layout, dense row-major). It is read as a broadcast operand (stride 0 on reduced
/// dims), so one pass over the source in memory order folds every element into its
/// output slot. When a row's destination stride is 0 the row is folded into four
/// independent partial accumulators first (vectorisable, and pairwise-ish rounding).

/// Folds `src` into `dst` with `combine`; `dst` must be pre-filled with the identity.
///
/// - Parameters:
///   - reduced: one flag per dim of `shape`; true dims are folded.
///   - dst: dense keepdim output of `elementCount(keptShape)` elements.
@inlinable
public func reduceStrided<T>(
    _ src: UnsafePointer<T>, shape: [Int], srcStrides: [Int], srcOffset: Int,
    reduced: [Bool], _ dst: UnsafeMutablePointer<T>, identity: T, _ combine: (T, T) -> T
) {
    precondition(reduced.count == shape.count, "reduceStrided: \(reduced.count) flags for rank \(shape.count)")
    var keptShape = shape
    for d in 0..<shape.count where reduced[d] { keptShape[d] = 1 }
    var dstStrides = contiguousStrides(keptShape)
    for d in 0..<shape.count where reduced[d] { dstStrides[d] = 0 }
    // Visit the source in its memory order: sort dims by decreasing source stride.
    let order = (0..<shape.count).sorted { abs(srcStrides[$0]) > abs(srcStrides[$1]) || (abs(srcStrides[$0]) == abs(srcStrides[$1]) && $0 < $1) }
    let pShape = order.map { shape[$0] }
    let pSrc = order.map { srcStrides[$0] }
    let pDst = order.map { dstStrides[$0] }
    forEachStridedRow(shape: pShape, strides: [pSrc, pDst], offsets: [srcOffset, 0]) { offs, n, inner in
        let s = src + offs[0], d = dst + offs[1], ss = inner[0], ds = inner[1]
        if ds == 0 {
            var a0 = identity, a1 = identity, a2 = identity, a3 = identity
            var i = 0
            if ss == 1 {
                while i + 4 <= n {
                    a0 = combine(a0, s[i]); a1 = combine(a1, s[i + 1])
                    a2 = combine(a2, s[i + 2]); a3 = combine(a3, s[i + 3])
                    i += 4
                }
            }
            while i < n { a0 = combine(a0, s[i * ss]); i += 1 }
            d[0] = combine(d[0], combine(combine(a0, a1), combine(a2, a3)))
        } else if ss == 1 && ds == 1 {
            for i in 0..<n { d[i] = combine(d[i], s[i]) }
        } else {
            for i in 0..<n { d[i * ds] = combine(d[i * ds], s[i * ss]) }
        }
    }
}

/// Calls `body(srcOffset, dstIndex)` for each 1-D line along `dim` of a strided source.
///
/// Lines are enumerated in row-major order of the remaining dims; `dstIndex` is the
/// line's index in that order (the dense output position with `dim` removed).
@inlinable
public func forEachLine(shape: [Int], strides: [Int], offset: Int, dim: Int, _ body: (_ srcOffset: Int, _ lineIndex: Int) -> Void) {
    var outerShape = shape
    var outerStrides = strides
    outerShape.remove(at: dim)
    outerStrides.remove(at: dim)
    if elementCount(outerShape) == 0 { return }
    // Enumerate outer positions in row-major order (no coalescing: order must be exact).
    let rank = outerShape.count
    var index = [Int](repeating: 0, count: rank)
    var off = offset
    let total = elementCount(outerShape)
    for line in 0..<total {
        body(off, line)
        var d = rank - 1
        while d >= 0 {
            index[d] += 1
            off += outerStrides[d]
            if index[d] < outerShape[d] { break }
            off -= outerStrides[d] * outerShape[d]
            index[d] = 0
            d -= 1
        }
    }
}

/// Index of the extreme element along `dim` and its value, for max (`greater`) or min.
///
/// NaN wins (as in PyTorch): once a NaN is seen it is the result. Ties keep the
/// first index. Writes dense outputs of the shape with `dim` removed.
@inlinable
public func argExtremeAlongDim<T: BinaryFloatingPoint>(
    _ src: UnsafePointer<T>, shape: [Int], strides: [Int], offset: Int, dim: Int,
    values: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<Int64>, findMax: Bool
) {
    let n = shape[dim], st = strides[dim]
    precondition(n > 0, "argmax/argmin: cannot reduce over an empty dimension \(dim) of shape \(shape)")
    forEachLine(shape: shape, strides: strides, offset: offset, dim: dim) { off, line in
        let p = src + off
        var best = p[0]
        var bestIndex = 0
        if !best.isNaN {
            for i in 1..<n {
                let v = p[i * st]
                if v.isNaN { best = v; bestIndex = i; break }
                if findMax ? (v > best) : (v < best) { best = v; bestIndex = i }
            }
        }
        values[line] = best
        indices[line] = Int64(bestIndex)
    }
}
