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
/// function this size and then costs an indirect call per element). The SIMD8 `combine`
/// folds eight independent lanes at once; it must agree lane by lane with the scalar one.
public protocol ReduceCombiner {
    associatedtype Element: SIMDScalar
    /// The neutral element: `combine(identity, x) == x`.
    static var identity: Element { get }
    static func combine(_ accumulated: Element, _ next: Element) -> Element
    /// Lane-wise `combine`.
    static func combine(_ accumulated: SIMD8<Element>, _ next: SIMD8<Element>) -> SIMD8<Element>
}

/// A float type whose SIMD8 max/min the reduction kernels call directly (the generic SIMD
/// mask operations run lane by lane).
public protocol ReduceScalar: BinaryFloatingPoint, SIMDScalar, Codable {
    /// Lane-wise NaN-propagating maximum.
    static func lanesMaximum(_ a: SIMD8<Self>, _ b: SIMD8<Self>) -> SIMD8<Self>
    /// Lane-wise NaN-propagating minimum.
    static func lanesMinimum(_ a: SIMD8<Self>, _ b: SIMD8<Self>) -> SIMD8<Self>
}

extension Float: ReduceScalar {
    @inlinable @inline(__always) public static func lanesMaximum(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        a.replacing(with: b, where: (b .> a) .| (b .!= b))
    }
    @inlinable @inline(__always) public static func lanesMinimum(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        a.replacing(with: b, where: (b .< a) .| (b .!= b))
    }
}

extension Double: ReduceScalar {
    @inlinable @inline(__always) public static func lanesMaximum(_ a: SIMD8<Double>, _ b: SIMD8<Double>) -> SIMD8<Double> {
        a.replacing(with: b, where: (b .> a) .| (b .!= b))
    }
    @inlinable @inline(__always) public static func lanesMinimum(_ a: SIMD8<Double>, _ b: SIMD8<Double>) -> SIMD8<Double> {
        a.replacing(with: b, where: (b .< a) .| (b .!= b))
    }
}

/// Σ: identity 0.
public enum SumCombiner<Element: BinaryFloatingPoint & SIMDScalar>: ReduceCombiner {
    @inlinable public static var identity: Element { .zero }
    @inlinable @inline(__always) public static func combine(_ a: Element, _ b: Element) -> Element { a + b }
    @inlinable @inline(__always) public static func combine(_ a: SIMD8<Element>, _ b: SIMD8<Element>) -> SIMD8<Element> { a + b }
}

/// max, NaN-propagating (once a NaN is folded in the result is NaN): identity -inf.
public enum MaxCombiner<Element: ReduceScalar>: ReduceCombiner {
    @inlinable public static var identity: Element { -.infinity }
    @inlinable @inline(__always) public static func combine(_ a: Element, _ b: Element) -> Element { b > a || b.isNaN ? b : a }
    @inlinable @inline(__always) public static func combine(_ a: SIMD8<Element>, _ b: SIMD8<Element>) -> SIMD8<Element> {
        Element.lanesMaximum(a, b)
    }
}

/// min, NaN-propagating: identity +inf.
public enum MinCombiner<Element: ReduceScalar>: ReduceCombiner {
    @inlinable public static var identity: Element { .infinity }
    @inlinable @inline(__always) public static func combine(_ a: Element, _ b: Element) -> Element { b < a || b.isNaN ? b : a }
    @inlinable @inline(__always) public static func combine(_ a: SIMD8<Element>, _ b: SIMD8<Element>) -> SIMD8<Element> {
        Element.lanesMinimum(a, b)
    }
}

/// The fixed blocking of a long folded row (see `foldRow`).
public enum ReduceBlocking {
    /// Elements folded into 32 register lanes before the lanes are combined.
    public static let block = 4096
    /// Consecutive blocks folded in order into one partial: the unit of work that threads share.
    public static let superBlock = 16 * 4096
}

/// Folds `src` into `dst` with `C.combine`; `dst` must be pre-filled with `C.identity`.
///
/// The source is visited in memory order (dims sorted by decreasing |stride|, then
/// coalesced). A row whose destination stride is 0 is folded by `foldRow` (32 SIMD lanes
/// per block of 4096 elements, blocks in order; a float sum's rounding error grows with
/// about 128 + 16 + n / 65536 terms rather than n); a row with destination stride 1
/// updates `dst` elementwise (SIMD), four source rows at a time when they fold into the
/// same output row (each output element then adds `(r0 + r1) + (r2 + r3)` per step).
/// Complexity: O(elements), one pass.
///
/// Threads (up to `KernelThreading.maxThreads`, from 2 · `minChunk` elements) split a kept
/// dimension, so each output slot is folded by one thread in the serial order; a full
/// reduction of one long row splits it into `ReduceBlocking.superBlock` partials that
/// are combined in order. Either way the result is bit-for-bit the single-threaded one,
/// whatever the thread count or load.
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
    let total = elementCount(shape)
    if total == 0 { return }
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
    // Pad to rank 2 so the inner 2-D block always exists.
    while shp.count < 2 { shp.insert(1, at: 0); sst.insert(0, at: 0); dstr.insert(0, at: 0) }
    let rank = shp.count
    if KernelThreading.maxThreads < 2 || total < 2 * KernelThreading.minChunk {
        reduceCoalesced(src + srcOffset, shape: shp, srcStrides: sst, dst, dstStrides: dstr, C.self)
        return
    }
    // Pieces of at least minChunk elements, a few per thread: Dispatch hands them to whichever
    // worker is free, so a core taken by another process delays the end less. Which piece a
    // thread runs does not change any result.
    let pieces = Swift.max(2, Swift.min(4 * KernelThreading.maxThreads, total / KernelThreading.minChunk))
    // Split the largest kept dim: every output slot then belongs to one piece. The inner dim
    // is split only when its pieces take the same path as the whole (see reduceCoalesced).
    // The inner dim is cut once per thread only, so that every piece still streams long runs
    // of each source row (measured: 8 pieces of a 2048-wide row were 2x slower than 2).
    func parts(_ d: Int) -> Int { Swift.min(d == rank - 1 ? KernelThreading.maxThreads : pieces, shp[d]) }
    var split = -1
    for d in 0..<rank where dstr[d] != 0 && shp[d] >= 2 && (split < 0 || shp[d] > shp[split]) {
        if d == rank - 1 && shp[d] >= 16 && shp[d] / parts(d) < 16 { continue }
        split = d
    }
    if split >= 0 {
        let extent = shp[split], parts = parts(split)
        let s0 = src + srcOffset
        concurrentIterations(parts) { p in
            let lo = extent * p / parts, hi = extent * (p + 1) / parts
            var piece = shp
            piece[split] = hi - lo
            reduceCoalesced(s0 + lo * sst[split], shape: piece, srcStrides: sst, dst + lo * dstr[split], dstStrides: dstr, C.self)
        }
        return
    }
    if rank == 2 && shp[0] == 1 && shp[1] >= 2 * ReduceBlocking.superBlock {
        // One long row folded to one value: per-super-block partials, combined in order.
        let n = shp[1], ss = sst[1]
        let count = (n + ReduceBlocking.superBlock - 1) / ReduceBlocking.superBlock
        let partials = UnsafeMutablePointer<C.Element>.allocate(capacity: count)
        defer { partials.deallocate() }
        let s0 = src + srcOffset
        concurrentIterations(count) { k in
            let start = k * ReduceBlocking.superBlock
            partials[k] = foldSuperBlock(s0 + start * ss, count: Swift.min(ReduceBlocking.superBlock, n - start), stride: ss, C.self)
        }
        var acc = C.identity
        for k in 0..<count { acc = C.combine(acc, partials[k]) }
        dst[0] = C.combine(dst[0], acc)
        return
    }
    reduceCoalesced(src + srcOffset, shape: shp, srcStrides: sst, dst, dstStrides: dstr, C.self)
}

/// The single-threaded body of `reduceStrided` over a coalesced layout of rank ≥ 2
/// (`src` and `dst` already offset). Each output slot is folded in a fixed order that
/// depends only on the layout.
@inlinable
func reduceCoalesced<C: ReduceCombiner>(
    _ src: UnsafePointer<C.Element>, shape shp: [Int], srcStrides sst: [Int],
    _ dst: UnsafeMutablePointer<C.Element>, dstStrides dstr: [Int], _: C.Type
) {
    let rank = shp.count
    let n = shp[rank - 1], ss = sst[rank - 1], ds = dstr[rank - 1]
    let rows = shp[rank - 2], rss = sst[rank - 2], rds = dstr[rank - 2]
    var outer = 1
    for d in 0..<(rank - 2) { outer *= shp[d] }
    if outer == 0 || rows == 0 || n == 0 { return }
    var index = [Int](repeating: 0, count: Swift.max(rank - 2, 1))
    var so = 0, dOff = 0
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
            if rds == 0 {
                // Rows folded into one output row (sum over dim 0): four rows at a time, so
                // the output row is loaded and stored a quarter as often (about 2x faster).
                var r = 0
                while r + 4 <= rows {
                    combine4Into(d0, s0 + r * rss, rowStride: rss, count: n, C.self)
                    r += 4
                }
                while r < rows { combineInto(d0, s0 + r * rss, count: n, C.self); r += 1 }
            } else {
                for r in 0..<rows { combineInto(d0 + r * rds, s0 + r * rss, count: n, C.self) }
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

/// `d[i] = combine(d[i], (s0[i] ⊕ s1[i]) ⊕ (s2[i] ⊕ s3[i]))` for four rows `rowStride` apart.
@inlinable @inline(__always)
func combine4Into<C: ReduceCombiner>(_ d: UnsafeMutablePointer<C.Element>, _ s: UnsafePointer<C.Element>, rowStride rs: Int,
                                     count n: Int, _: C.Type) {
    typealias V = SIMD8<C.Element>
    var i = 0
    while i + 8 <= n {
        let a = UnsafeRawPointer(d + i).loadUnaligned(as: V.self)
        let b0 = UnsafeRawPointer(s + i).loadUnaligned(as: V.self)
        let b1 = UnsafeRawPointer(s + rs + i).loadUnaligned(as: V.self)
        let b2 = UnsafeRawPointer(s + 2 * rs + i).loadUnaligned(as: V.self)
        let b3 = UnsafeRawPointer(s + 3 * rs + i).loadUnaligned(as: V.self)
        UnsafeMutableRawPointer(d + i).storeBytes(of: C.combine(a, C.combine(C.combine(b0, b1), C.combine(b2, b3))), as: V.self)
        i += 8
    }
    while i < n {
        d[i] = C.combine(d[i], C.combine(C.combine(s[i], s[rs + i]), C.combine(s[2 * rs + i], s[3 * rs + i])))
        i += 1
    }
}

/// `d[i] = combine(d[i], s[i])` for `i < n`, eight lanes at a time.
@inlinable @inline(__always)
func combineInto<C: ReduceCombiner>(_ d: UnsafeMutablePointer<C.Element>, _ s: UnsafePointer<C.Element>, count n: Int, _: C.Type) {
    var i = 0
    while i + 8 <= n {
        let a = UnsafeRawPointer(d + i).loadUnaligned(as: SIMD8<C.Element>.self)
        let b = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD8<C.Element>.self)
        UnsafeMutableRawPointer(d + i).storeBytes(of: C.combine(a, b), as: SIMD8<C.Element>.self)
        i += 8
    }
    while i < n { d[i] = C.combine(d[i], s[i]); i += 1 }
}

/// Folds one strided row of `count` elements: the super-blocks of
/// `ReduceBlocking.superBlock` elements in order (see `foldSuperBlock`).
@inlinable
func foldRow<C: ReduceCombiner>(_ s: UnsafePointer<C.Element>, count n: Int, stride ss: Int, _: C.Type) -> C.Element {
    if n < 8 {
        var acc = C.identity
        for i in 0..<n { acc = C.combine(acc, s[i * ss]) }
        return acc
    }
    var total = C.identity
    var i = 0
    while i < n {
        let m = Swift.min(ReduceBlocking.superBlock, n - i)
        total = C.combine(total, foldSuperBlock(s + i * ss, count: m, stride: ss, C.self))
        i += m
    }
    return total
}

/// Folds up to `ReduceBlocking.superBlock` elements: blocks of `ReduceBlocking.block`
/// elements, in order. A unit-stride block runs in four SIMD8 accumulators (32 lanes),
/// others in four scalar ones.
@inlinable
func foldSuperBlock<C: ReduceCombiner>(_ s: UnsafePointer<C.Element>, count n: Int, stride ss: Int, _: C.Type) -> C.Element {
    var total = C.identity
    var start = 0
    while start < n {
        let end = Swift.min(n, start + ReduceBlocking.block)
        var i = start
        var acc: C.Element
        if ss == 1 {
            let id = SIMD8<C.Element>(repeating: C.identity)
            var a0 = id, a1 = id, a2 = id, a3 = id
            while i + 32 <= end {
                let p = UnsafeRawPointer(s + i)
                a0 = C.combine(a0, p.loadUnaligned(as: SIMD8<C.Element>.self))
                a1 = C.combine(a1, p.loadUnaligned(fromByteOffset: 8 * MemoryLayout<C.Element>.stride, as: SIMD8<C.Element>.self))
                a2 = C.combine(a2, p.loadUnaligned(fromByteOffset: 16 * MemoryLayout<C.Element>.stride, as: SIMD8<C.Element>.self))
                a3 = C.combine(a3, p.loadUnaligned(fromByteOffset: 24 * MemoryLayout<C.Element>.stride, as: SIMD8<C.Element>.self))
                i += 32
            }
            while i + 8 <= end {
                a0 = C.combine(a0, UnsafeRawPointer(s + i).loadUnaligned(as: SIMD8<C.Element>.self))
                i += 8
            }
            let v = C.combine(C.combine(a0, a1), C.combine(a2, a3))
            acc = C.combine(C.combine(C.combine(v[0], v[4]), C.combine(v[1], v[5])),
                            C.combine(C.combine(v[2], v[6]), C.combine(v[3], v[7])))
            while i < end { acc = C.combine(acc, s[i]); i += 1 }
        } else {
            var a0 = C.identity, a1 = C.identity, a2 = C.identity, a3 = C.identity
            while i + 4 <= end {
                let p = s + i * ss
                a0 = C.combine(a0, p[0]); a1 = C.combine(a1, p[ss])
                a2 = C.combine(a2, p[2 * ss]); a3 = C.combine(a3, p[3 * ss])
                i += 4
            }
            while i < end { a0 = C.combine(a0, s[i * ss]); i += 1 }
            acc = C.combine(C.combine(a0, a1), C.combine(a2, a3))
        }
        total = C.combine(total, acc)
        start = end
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
public func squaredDeviationSumStrided<T: BinaryFloatingPoint & SIMDScalar>(
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
        if ds == 0 && ss == 1 {
            d[0] += squaredDeviationSum(s, count: n, mean: m[0])
        } else if ds == 0 {
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

/// Σ (s[i] − mean)² over a contiguous row: blocks of `ReduceBlocking.block` elements in
/// four SIMD8 accumulators (as `foldSuperBlock`), blocks added in order.
@inlinable
func squaredDeviationSum<T: BinaryFloatingPoint & SIMDScalar>(_ s: UnsafePointer<T>, count n: Int, mean mu: T) -> T {
    typealias V = SIMD8<T>
    let m = V(repeating: mu)
    var total: T = 0
    var start = 0
    while start < n {
        let end = Swift.min(n, start + ReduceBlocking.block)
        var a0 = V(), a1 = V(), a2 = V(), a3 = V()
        var i = start
        while i + 32 <= end {
            let p = UnsafeRawPointer(s + i)
            let x0 = p.loadUnaligned(as: V.self) - m
            let x1 = p.loadUnaligned(fromByteOffset: 8 * MemoryLayout<T>.stride, as: V.self) - m
            let x2 = p.loadUnaligned(fromByteOffset: 16 * MemoryLayout<T>.stride, as: V.self) - m
            let x3 = p.loadUnaligned(fromByteOffset: 24 * MemoryLayout<T>.stride, as: V.self) - m
            a0 += x0 * x0; a1 += x1 * x1; a2 += x2 * x2; a3 += x3 * x3
            i += 32
        }
        while i + 8 <= end {
            let x = UnsafeRawPointer(s + i).loadUnaligned(as: V.self) - m
            a0 += x * x
            i += 8
        }
        let v = (a0 + a1) + (a2 + a3)
        var acc = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
        while i < end { let x = s[i] - mu; acc += x * x; i += 1 }
        total += acc
        start = end
    }
    return total
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
    let rank = shape.count
    if dim < rank - 1 && strides[rank - 1] == 1 && shape[rank - 1] >= 8 && st != 1 {
        // Lines cross contiguous rows (max over dim 0 of a matrix): sweep the rows in memory
        // order, updating a row of running results, instead of striding down each line.
        argExtremeByRows(src, shape: shape, strides: strides, offset: offset, dim: dim, values: values, indices: indices, findMax: findMax)
        return
    }
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

/// `argExtremeAlongDim` when the last dim (not `dim`) is contiguous: for each index of the
/// other dims, the rows along `dim` are swept in order and fold elementwise into the output
/// row, with the same rule as the line loop (first NaN wins and stays; strict comparison,
/// so ties keep the first index). Output columns are split among Loom's workers.
@inlinable
func argExtremeByRows<T: BinaryFloatingPoint>(
    _ src: UnsafePointer<T>, shape: [Int], strides: [Int], offset: Int, dim: Int,
    values: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<Int64>, findMax: Bool
) {
    let rank = shape.count
    let n = shape[dim], st = strides[dim], m = shape[rank - 1]
    var kept = shape
    kept.remove(at: dim)
    let outStrides = contiguousStrides(kept)  // dense output, `dim` removed; last stride 1
    var outerShape: [Int] = [], outerSrc: [Int] = [], outerDst: [Int] = []
    for d in 0..<(rank - 1) where d != dim {
        outerShape.append(shape[d])
        outerSrc.append(strides[d])
        outerDst.append(outStrides[d < dim ? d : d - 1])
    }
    let outer = elementCount(outerShape)
    if outer == 0 || m == 0 { return }
    func block(_ p: UnsafePointer<T>, _ v: UnsafeMutablePointer<T>, _ ix: UnsafeMutablePointer<Int64>, _ cols: Range<Int>) {
        for j in cols { v[j] = p[j]; ix[j] = 0 }
        for k in 1..<Swift.max(n, 1) {
            let row = p + k * st, kk = Int64(k)
            if findMax {
                for j in cols {
                    let x = row[j], b = v[j]
                    if !b.isNaN && (x > b || x.isNaN) { v[j] = x; ix[j] = kk }
                }
            } else {
                for j in cols {
                    let x = row[j], b = v[j]
                    if !b.isNaN && (x < b || x.isNaN) { v[j] = x; ix[j] = kk }
                }
            }
        }
    }
    func run(_ o: Int, _ cols: Range<Int>) {
        var rem = o, so = offset, dOff = 0
        for d in stride(from: outerShape.count - 1, through: 0, by: -1) {
            let k = rem % outerShape[d]
            rem /= outerShape[d]
            so += k * outerSrc[d]; dOff += k * outerDst[d]
        }
        block(src + so, values + dOff, indices + dOff, cols)
    }
    let total = outer * n * m
    if KernelThreading.maxThreads < 2 || total < 2 * KernelThreading.minChunk {
        for o in 0..<outer { run(o, 0..<m) }
        return
    }
    // Pieces: whole output rows when there are several, else column ranges of one row.
    if outer >= 2 {
        let pieces = Swift.min(outer, 4 * KernelThreading.maxThreads)
        concurrentIterations(pieces) { p in
            for o in (outer * p / pieces)..<(outer * (p + 1) / pieces) { run(o, 0..<m) }
        }
    } else {
        let pieces = Swift.min(KernelThreading.maxThreads, Swift.max(1, m / 64))
        concurrentIterations(pieces) { p in run(0, (m * p / pieces)..<(m * (p + 1) / pieces)) }
    }
}
