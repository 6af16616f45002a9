/// Elementwise kernels: unary map, binary zip and ternary select over strided inputs,
/// writing a dense row-major output. Broadcasting is stride 0 on an input.

/// Applies `op` to every element of a strided source, writing a dense destination.
///
/// - Parameters:
///   - src: base pointer of the source storage; `srcStrides`/`srcOffset` locate elements.
///   - shape: the index space; `dst` holds `elementCount(shape)` elements, row-major.
///   - parallel: split contiguous work across threads (worth it for transcendental ops).
@inlinable
public func mapStrided<T, U>(
    _ src: UnsafePointer<T>, shape: [Int], srcStrides: [Int], srcOffset: Int,
    _ dst: UnsafeMutablePointer<U>, parallel: Bool = false, _ op: (T) -> U
) {
    let count = elementCount(shape)
    if count == 0 { return }
    if isContiguous(shape: shape, strides: srcStrides) {
        let s = src + srcOffset
        if parallel {
            parallelChunks(count: count, grain: KernelThreading.minChunk / 4) { r in
                for i in r { dst[i] = op(s[i]) }
            }
        } else {
            for i in 0..<count { dst[i] = op(s[i]) }
        }
        return
    }
    var rows = StridedRows(shape: shape, strides: [srcStrides, contiguousStrides(shape)], offsets: [srcOffset, 0])
    let n = rows.rowLength, ss = rows.inner0, ds = rows.inner1
    while rows.next() {
        let s = src + rows.offset0, d = dst + rows.offset1
        if ss == 1 && ds == 1 {
            for i in 0..<n { d[i] = op(s[i]) }
        } else {
            for i in 0..<n { d[i * ds] = op(s[i * ss]) }
        }
    }
}

/// Combines two strided (possibly broadcast) inputs elementwise into a dense output.
@inlinable
public func zipStrided<A, B, C>(
    _ a: UnsafePointer<A>, aStrides: [Int], aOffset: Int,
    _ b: UnsafePointer<B>, bStrides: [Int], bOffset: Int,
    shape: [Int], _ dst: UnsafeMutablePointer<C>, parallel: Bool = false, _ op: (A, B) -> C
) {
    let count = elementCount(shape)
    if count == 0 { return }
    if isContiguous(shape: shape, strides: aStrides) && isContiguous(shape: shape, strides: bStrides) {
        let pa = a + aOffset, pb = b + bOffset
        if parallel {
            parallelChunks(count: count, grain: KernelThreading.minChunk / 4) { r in
                for i in r { dst[i] = op(pa[i], pb[i]) }
            }
        } else {
            for i in 0..<count { dst[i] = op(pa[i], pb[i]) }
        }
        return
    }
    var rows = StridedRows(shape: shape, strides: [aStrides, bStrides, contiguousStrides(shape)], offsets: [aOffset, bOffset, 0])
    let n = rows.rowLength, sa = rows.inner0, sb = rows.inner1, sd = rows.inner2
    while rows.next() {
        let pa = a + rows.offset0, pb = b + rows.offset1, d = dst + rows.offset2
        if sd == 1 && sa == 1 && sb == 1 {
            for i in 0..<n { d[i] = op(pa[i], pb[i]) }
        } else if sd == 1 && sa == 1 && sb == 0 {
            let y = pb[0]
            for i in 0..<n { d[i] = op(pa[i], y) }
        } else if sd == 1 && sa == 0 && sb == 1 {
            let x = pa[0]
            for i in 0..<n { d[i] = op(x, pb[i]) }
        } else {
            for i in 0..<n { d[i * sd] = op(pa[i * sa], pb[i * sb]) }
        }
    }
}

/// Selects `a` where `cond` is true and `b` elsewhere (all strided, broadcast by stride 0).
@inlinable
public func selectStrided<T>(
    _ cond: UnsafePointer<Bool>, condStrides: [Int], condOffset: Int,
    _ a: UnsafePointer<T>, aStrides: [Int], aOffset: Int,
    _ b: UnsafePointer<T>, bStrides: [Int], bOffset: Int,
    shape: [Int], _ dst: UnsafeMutablePointer<T>
) {
    var rows = StridedRows(shape: shape, strides: [condStrides, aStrides, bStrides, contiguousStrides(shape)],
                           offsets: [condOffset, aOffset, bOffset, 0])
    let n = rows.rowLength, sc = rows.inner0, sa = rows.inner1, sb = rows.inner2, sd = rows.inner3
    while rows.next() {
        let pc = cond + rows.offset0, pa = a + rows.offset1, pb = b + rows.offset2, d = dst + rows.offset3
        if sc == 1 && sa == 1 && sb == 1 && sd == 1 {
            for i in 0..<n { d[i] = pc[i] ? pa[i] : pb[i] }
        } else {
            for i in 0..<n { d[i * sd] = pc[i * sc] ? pa[i * sa] : pb[i * sb] }
        }
    }
}

/// Copies a strided source into a strided destination of the same shape.
@inlinable
public func copyStrided<T>(
    _ src: UnsafePointer<T>, srcStrides: [Int], srcOffset: Int,
    _ dst: UnsafeMutablePointer<T>, dstStrides: [Int], dstOffset: Int, shape: [Int]
) {
    // A transposing copy (unit stride on opposite inner dims) walks tiles so both sides stay
    // in cache (Transpose.swift); row by row, one side strides through memory.
    let (cs, cst) = coalesceDimensions(shape: shape, strides: [srcStrides, dstStrides])
    let r = cs.count
    if r >= 2 && cst[0][r - 2] == 1 && cst[1][r - 1] == 1 && cs[r - 2] >= 8 && cs[r - 1] >= 8 {
        transposeCopy(src + srcOffset, dst + dstOffset, shape: cs, srcStrides: cst[0], dstStrides: cst[1])
        return
    }
    var rows = StridedRows(shape: shape, strides: [srcStrides, dstStrides], offsets: [srcOffset, dstOffset])
    let n = rows.rowLength, ss = rows.inner0, ds = rows.inner1
    while rows.next() {
        let s = src + rows.offset0, d = dst + rows.offset1
        if ss == 1 && ds == 1 {
            d.update(from: s, count: n)
        } else {
            for i in 0..<n { d[i * ds] = s[i * ss] }
        }
    }
}

/// Updates a strided destination in place: `dst[i] = op(dst[i], src[i])` (src broadcast by stride 0).
@inlinable
public func accumulateStrided<T>(
    _ dst: UnsafeMutablePointer<T>, dstStrides: [Int], dstOffset: Int,
    _ src: UnsafePointer<T>, srcStrides: [Int], srcOffset: Int, shape: [Int], _ op: (T, T) -> T
) {
    var rows = StridedRows(shape: shape, strides: [dstStrides, srcStrides], offsets: [dstOffset, srcOffset])
    let n = rows.rowLength, ds = rows.inner0, ss = rows.inner1
    while rows.next() {
        let d = dst + rows.offset0, s = src + rows.offset1
        if ds == 1 && ss == 1 {
            for i in 0..<n { d[i] = op(d[i], s[i]) }
        } else if ss == 0 {
            let v = s[0]
            for i in 0..<n { d[i * ds] = op(d[i * ds], v) }
        } else {
            for i in 0..<n { d[i * ds] = op(d[i * ds], s[i * ss]) }
        }
    }
}
