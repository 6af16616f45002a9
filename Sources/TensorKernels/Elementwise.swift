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
    forEachStridedRow(shape: shape, strides: [srcStrides, contiguousStrides(shape)], offsets: [srcOffset, 0]) { offs, n, inner in
        let s = src + offs[0], d = dst + offs[1], ss = inner[0], ds = inner[1]
        for i in 0..<n { d[i * ds] = op(s[i * ss]) }
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
    forEachStridedRow(shape: shape, strides: [aStrides, bStrides, contiguousStrides(shape)],
                      offsets: [aOffset, bOffset, 0]) { offs, n, inner in
        let pa = a + offs[0], pb = b + offs[1], d = dst + offs[2]
        let sa = inner[0], sb = inner[1], sd = inner[2]
        if sd == 1 && sa == 1 && sb == 0 {
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
    forEachStridedRow(shape: shape, strides: [condStrides, aStrides, bStrides, contiguousStrides(shape)],
                      offsets: [condOffset, aOffset, bOffset, 0]) { offs, n, inner in
        let pc = cond + offs[0], pa = a + offs[1], pb = b + offs[2], d = dst + offs[3]
        let sc = inner[0], sa = inner[1], sb = inner[2], sd = inner[3]
        for i in 0..<n { d[i * sd] = pc[i * sc] ? pa[i * sa] : pb[i * sb] }
    }
}

/// Copies a strided source into a strided destination of the same shape.
@inlinable
public func copyStrided<T>(
    _ src: UnsafePointer<T>, srcStrides: [Int], srcOffset: Int,
    _ dst: UnsafeMutablePointer<T>, dstStrides: [Int], dstOffset: Int, shape: [Int]
) {
    forEachStridedRow(shape: shape, strides: [srcStrides, dstStrides], offsets: [srcOffset, dstOffset]) { offs, n, inner in
        let s = src + offs[0], d = dst + offs[1], ss = inner[0], ds = inner[1]
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
    forEachStridedRow(shape: shape, strides: [dstStrides, srcStrides], offsets: [dstOffset, srcOffset]) { offs, n, inner in
        let d = dst + offs[0], s = src + offs[1], ds = inner[0], ss = inner[1]
        if ds == 1 && ss == 1 {
            for i in 0..<n { d[i] = op(d[i], s[i]) }
        } else {
            for i in 0..<n { d[i * ds] = op(d[i * ds], s[i * ss]) }
        }
    }
}
