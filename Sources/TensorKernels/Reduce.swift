/// Reductions over any set of dimensions.
///
/// The destination has the source's shape with reduced dims of extent 1 (keepdim
/// layout, dense row-major). It is read as a broadcast operand (stride 0 on reduced
/// dims), so one pass over the source in memory order folds every element into its
/// output slot. The two innermost (coalesced) dims are looped inside the kernel, so a
/// short row (summing dim 0 of an [N, 3] matrix) costs no per-row callback.

/// An associative, commutative fold for `reduceStrided` (up to floating-point rounding).
///
/// A type, not a closure, so that after generic specialisation `combine` is a direct,
/// inlinable call in the hot loop (a closure argument is not reliably inlined into a
/// function this size and then costs an indirect call per element).
public protocol ReduceCombiner {
    associatedtype Element
    /// The neutral element: `combine(identity, x) == x`.
    static var identity: Element { get }
    static func combine(_ accumulated: Element, _ next: Element) -> Element
}

/// Σ: identity 0.
public enum SumCombiner<Element: AdditiveArithmetic>: ReduceCombiner {
    @inlinable public static var identity: Element { .zero }
    @inlinable @inline(__always) public static func combine(_ a: Element, _ b: Element) -> Element { a + b }
}

/// max, NaN-propagating (once a NaN is folded in the result is NaN): identity -inf.
public enum MaxCombiner<Element: FloatingPoint>: ReduceCombiner {
    @inlinable public static var identity: Element { -.infinity }
    @inlinable @inline(__always) public static func combine(_ a: Element, _ b: Element) -> Element { b > a || b.isNaN ? b : a }
}

/// min, NaN-propagating: identity +inf.
public enum MinCombiner<Element: FloatingPoint>: ReduceCombiner {
    @inlinable public static var identity: Element { .infinity }
    @inlinable @inline(__always) public static func combine(_ a: Element, _ b: Element) -> Element { b < a || b.isNaN ? b : a }
}

/// Folds `src` into `dst` with `C.combine`; `dst` must be pre-filled with `C.identity`.
///
/// The source is visited in memory order (dims sorted by decreasing |stride|, then
/// coalesced). A row whose destination stride is 0 is folded into eight partial
/// accumulators in blocks of 1024 elements (vectorisable, and the rounding error of a
/// float sum grows with n / 1024 + 128 rather than n); a row with destination stride 1
/// updates `dst` elementwise (vectorisable). Complexity: O(elements), one pass.
///
/// - Parameters:
///   - reduced: one flag per dim of `shape`; true dims are folded.
///   - dst: dense keepdim output of `elementCount(keptShape)` elements.
@inlinable
public func reduceStrided<C: ReduceCombiner>(
    _ src: UnsafePointer<C.Element>, shape: [Int], srcStrides: [Int], srcOffset: Int,
    reduced: [Bool], _ dst: UnsafeMutablePointer<C.Element>, _ combiner: C.Type
) {
    precondition(reduced.count == shape.count, "reduceStrided: \(reduced.count) flags for rank \(shape.count)")
    precondition(srcStrides.count == shape.count, "reduceStrided: strides \(srcStrides) do not match shape \(shape)")
    if elementCount(shape) == 0 { return }
    var keptShape = shape
    for d in 0..<shape.count where reduced[d] { keptShape[d] = 1 }
    var dstStrides = contiguousStrides(keptShape)
    for d in 0..<shape.count where reduced[d] { dstStrides[d] = 0 }
    // Visit the source in its memory order: sort dims by decreasing source stride.
    let order = (0..<shape.count).sorted {
        let a = Swift.abs(srcStrides[$0]), b = Swift.abs(srcStrides[$1])
        return a > b || (a == b && $0 < $1)
    }
    let (cs, cst) = coalesceDimensions(shape: order.map { shape[$0] }, strides: [order.map { srcStrides[$0] }, order.map { dstStrides[$0] }])
    var shp = cs, sst = cst[0], dstr = cst[1]
    // Pad to rank 2 so the inner 2-D block below always exists.
    while shp.count < 2 { shp.insert(1, at: 0); sst.insert(0, at: 0); dstr.insert(0, at: 0) }
    let rank = shp.count
    let n = shp[rank - 1], ss = sst[rank - 1], ds = dstr[rank - 1]
    let rows = shp[rank - 2], rss = sst[rank - 2], rds = dstr[rank - 2]
    var outer = 1
    for d in 0..<(rank - 2) { outer *= shp[d] }
    var index = [Int](repeating: 0, count: Swift.max(rank - 2, 1))
    var so = srcOffset, dOff = 0
    for _ in 0..<outer {
        let s0 = src + so, d0 = dst + dOff
        if ds == 0 {
            // Fold each row to one value.
            for r in 0..<rows {
                d0[r * rds] = C.combine(d0[r * rds], foldRow(s0 + r * rss, count: n, stride: ss, C.self))
            }
        } else if ss == 1 && ds == 1 && rds == 0 && n < 16 && rows >= 64 {
            // Few columns (sum over dim 0 of an [N, 3] matrix): fold each column of a block
            // of rows in registers; the block stays in L1 across its columns.
            var r0 = 0
            while r0 < rows {
                let rb = Swift.min(1024, rows - r0)
                let s = s0 + r0 * rss
                for c in 0..<n { d0[c] = C.combine(d0[c], foldRow(s + c, count: rb, stride: rss, C.self)) }
                r0 += rb
            }
        } else if ss == 1 && ds == 1 {
            for r in 0..<rows {
                let s = s0 + r * rss, d = d0 + r * rds
                for i in 0..<n { d[i] = C.combine(d[i], s[i]) }
            }
        } else {
            for r in 0..<rows {
                let s = s0 + r * rss, d = d0 + r * rds
                for i in 0..<n { d[i * ds] = C.combine(d[i * ds], s[i * ss]) }
            }
        }
        // Advance the outer multi-index (row-major).
        var d = rank - 3
        while d >= 0 {
            index[d] += 1
            so += sst[d]; dOff += dstr[d]
            if index[d] < shp[d] { break }
            so -= sst[d] * shp[d]; dOff -= dstr[d] * shp[d]
            index[d] = 0
            d -= 1
        }
    }
}

/// Folds one strided row of `count` elements: blocks of 1024 into eight (unit stride) or
/// four (other strides) independent accumulators each.
@inlinable @inline(__always)
func foldRow<C: ReduceCombiner>(_ s: UnsafePointer<C.Element>, count n: Int, stride ss: Int, _: C.Type) -> C.Element {
    if n < 8 {
        var acc = C.identity
        for i in 0..<n { acc = C.combine(acc, s[i * ss]) }
        return acc
    }
    var total = C.identity
    var i = 0
    while i < n {
        let end = Swift.min(n, i + 1024)
        var a0 = C.identity, a1 = C.identity, a2 = C.identity, a3 = C.identity
        var a4 = C.identity, a5 = C.identity, a6 = C.identity, a7 = C.identity
        if ss == 1 {
            while i + 8 <= end {
                a0 = C.combine(a0, s[i]); a1 = C.combine(a1, s[i + 1])
                a2 = C.combine(a2, s[i + 2]); a3 = C.combine(a3, s[i + 3])
                a4 = C.combine(a4, s[i + 4]); a5 = C.combine(a5, s[i + 5])
                a6 = C.combine(a6, s[i + 6]); a7 = C.combine(a7, s[i + 7])
                i += 8
            }
        } else {
            while i + 4 <= end {
                let p = s + i * ss
                a0 = C.combine(a0, p[0]); a1 = C.combine(a1, p[ss])
                a2 = C.combine(a2, p[2 * ss]); a3 = C.combine(a3, p[3 * ss])
                i += 4
            }
        }
        while i < end { a0 = C.combine(a0, s[i * ss]); i += 1 }
        let lo = C.combine(C.combine(a0, a1), C.combine(a2, a3))
        let hi = C.combine(C.combine(a4, a5), C.combine(a6, a7))
        total = C.combine(total, C.combine(lo, hi))
    }
    return total
}

/// Adds `(x - mean)²` of every source element into its output slot: the second pass of
/// a two-pass variance.
///
/// `mean` and `dst` are dense keepdim tensors (the layout `reduceStrided` writes);
/// `dst` must be pre-filled with 0. Two passes (mean first, then squared deviations)
/// avoid the cancellation of E[x²] − E[x]² (Chan, Golub & LeVeque 1983).
@inlinable
public func squaredDeviationSumStrided<T: FloatingPoint>(
    _ src: UnsafePointer<T>, shape: [Int], srcStrides: [Int], srcOffset: Int,
    reduced: [Bool], mean: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>
) {
    precondition(reduced.count == shape.count, "squaredDeviationSumStrided: \(reduced.count) flags for rank \(shape.count)")
    if elementCount(shape) == 0 { return }
    var keptShape = shape
    for d in 0..<shape.count where reduced[d] { keptShape[d] = 1 }
    var dstStrides = contiguousStrides(keptShape)
    for d in 0..<shape.count where reduced[d] { dstStrides[d] = 0 }
    let order = (0..<shape.count).sorted {
        let a = Swift.abs(srcStrides[$0]), b = Swift.abs(srcStrides[$1])
        return a > b || (a == b && $0 < $1)
    }
    let pShape = order.map { shape[$0] }, pSrc = order.map { srcStrides[$0] }, pDst = order.map { dstStrides[$0] }
    forEachStridedRow(shape: pShape, strides: [pSrc, pDst], offsets: [srcOffset, 0]) { offs, n, inner in
        let s = src + offs[0], m = mean + offs[1], d = dst + offs[1], ss = inner[0], ds = inner[1]
        if ds == 0 {
            let mu = m[0]
            var a0: T = 0, a1: T = 0
            var i = 0
            while i + 2 <= n {
                let x0 = s[i * ss] - mu, x1 = s[(i + 1) * ss] - mu
                a0 += x0 * x0; a1 += x1 * x1
                i += 2
            }
            if i < n { let x = s[i * ss] - mu; a0 += x * x }
            d[0] += a0 + a1
        } else {
            for i in 0..<n {
                let x = s[i * ss] - m[i * ds]
                d[i * ds] += x * x
            }
        }
    }
}

/// Calls `body(srcOffset, lineIndex)` for each 1-D line along `dim` of a strided source.
///
/// Lines are enumerated in row-major order of the remaining dims; `lineIndex` is the
/// line's index in that order (the dense output position with `dim` removed).
@inlinable
public func forEachLine(shape: [Int], strides: [Int], offset: Int, dim: Int, _ body: (_ srcOffset: Int, _ lineIndex: Int) -> Void) {
    var line = 0
    forEachLine(shape: shape, dim: dim, strides: [strides], offsets: [offset]) { offs in
        body(offs[0], line)
        line += 1
    }
}

/// Calls `body(offsets)` for each 1-D line along `dim`, with one start offset per operand.
///
/// Every operand shares the index space `shape` and has its own strides; lines are
/// visited in row-major order of the dims other than `dim`; `lines` restricts the visit
/// to a range of line numbers (for splitting work across threads). Nothing is called
/// when a dim other than `dim` has extent 0 (a line of length 0 is still visited).
/// Complexity: O(lines · operands) besides the body.
@inlinable
public func forEachLine(shape: [Int], dim: Int, strides: [[Int]], offsets: [Int], lines: Range<Int>? = nil,
                        _ body: (_ offsets: UnsafeBufferPointer<Int>) -> Void) {
    precondition(dim >= 0 && dim < shape.count, "forEachLine: dimension \(dim) out of range for shape \(shape)")
    precondition(strides.count == offsets.count, "forEachLine: \(strides.count) stride sets for \(offsets.count) offsets")
    let nOps = offsets.count
    var outerShape = shape
    outerShape.remove(at: dim)
    var outerStrides = strides
    for o in 0..<nOps {
        precondition(strides[o].count == shape.count, "forEachLine: strides \(strides[o]) do not match shape \(shape)")
        outerStrides[o].remove(at: dim)
    }
    let total = elementCount(outerShape)
    let range = lines ?? 0..<total
    precondition(range.lowerBound >= 0 && range.upperBound <= total, "forEachLine: lines \(range) out of 0..<\(total)")
    if range.isEmpty { return }
    let rank = outerShape.count
    var index = [Int](repeating: 0, count: rank)
    var offs = offsets
    // Start at line `range.lowerBound`: decompose it into a row-major multi-index.
    var rem = range.lowerBound
    for d in stride(from: rank - 1, through: 0, by: -1) where rem > 0 {
        index[d] = rem % outerShape[d]
        rem /= outerShape[d]
        for o in 0..<nOps { offs[o] += index[d] * outerStrides[o][d] }
    }
    offs.withUnsafeMutableBufferPointer { ob in
        for _ in range {
            body(UnsafeBufferPointer(ob))
            var d = rank - 1
            while d >= 0 {
                index[d] += 1
                for o in 0..<nOps { ob[o] += outerStrides[o][d] }
                if index[d] < outerShape[d] { break }
                for o in 0..<nOps { ob[o] -= outerStrides[o][d] * outerShape[d] }
                index[d] = 0
                d -= 1
            }
        }
    }
}

/// Index of the extreme element along `dim` and its value, for max (`findMax`) or min.
///
/// NaN wins (as in PyTorch): once a NaN is seen it is the result. Ties keep the
/// first index. Writes dense outputs of the shape with `dim` removed.
/// Precondition: `shape[dim] > 0` (callers name their op in a check of their own).
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
            if findMax {
                for i in 1..<n {
                    let v = p[i * st]
                    if v.isNaN { best = v; bestIndex = i; break }
                    if v > best { best = v; bestIndex = i }
                }
            } else {
                for i in 1..<n {
                    let v = p[i * st]
                    if v.isNaN { best = v; bestIndex = i; break }
                    if v < best { best = v; bestIndex = i }
                }
            }
        }
        values[line] = best
        indices[line] = Int64(bestIndex)
    }
}
