/// Index kernels: gather, scatter-add, one-hot and index validation over strided operands.
///
/// Every kernel walks the index tensor's shape (the "index space") with
/// `forEachStridedRow`. The indexed operand is read or written with its stride along
/// `dim` zeroed in the walk, and the index value times that stride added per element:
/// `offset(i) = walkOffset(i) + index[i] * dimStride`. Index values must already be
/// validated (see `firstIndexOutOfRange`); the kernels do not check them.

/// The first index value (row-major order) outside `0..<bound`, or nil when all are valid.
///
/// Complexity: O(elements of `shape`).
@inlinable
public func firstIndexOutOfRange<I: BinaryInteger>(
    _ index: UnsafePointer<I>, shape: [Int], strides: [Int], offset: Int, bound: Int
) -> Int? {
    var bad: Int? = nil
    forEachStridedRow(shape: shape, strides: [strides], offsets: [offset]) { offs, n, inner in
        if bad != nil { return }
        let p = index + offs[0], s = inner[0]
        for i in 0..<n {
            let v = Int(truncatingIfNeeded: p[i * s])
            if v < 0 || v >= bound {
                bad = v
                return
            }
        }
    }
    return bad
}

/// Gathers along `dim`: `dst[i] = src[i with coordinate dim replaced by index[i]]`.
///
/// - Parameters:
///   - src: source storage base; `srcStrides`/`srcOffset` describe the source (its
///     extents may exceed `shape` in every dimension; only `srcStrides[dim]` is used along `dim`).
///   - index: index storage base with strides over `shape` (stride 0 broadcasts).
///   - shape: the index space, which is also the output shape.
///   - dst: dense row-major output of `elementCount(shape)` elements.
/// Complexity: O(elements of `shape`).
@inlinable
public func gatherStrided<T, I: BinaryInteger>(
    _ src: UnsafePointer<T>, srcStrides: [Int], srcOffset: Int,
    _ index: UnsafePointer<I>, indexStrides: [Int], indexOffset: Int,
    shape: [Int], dim: Int, _ dst: UnsafeMutablePointer<T>
) {
    precondition(dim >= 0 && dim < shape.count, "gatherStrided: dim \(dim) out of range for rank \(shape.count)")
    let dimStride = srcStrides[dim]
    var walk = srcStrides
    walk[dim] = 0
    forEachStridedRow(shape: shape, strides: [walk, indexStrides, contiguousStrides(shape)],
                      offsets: [srcOffset, indexOffset, 0]) { offs, n, inner in
        let s = src + offs[0], ix = index + offs[1], d = dst + offs[2]
        let ss = inner[0], si = inner[1], sd = inner[2]
        if si == 0 {
            // One index for the whole row (index_select / embedding): a strided row copy.
            let base = s + Int(truncatingIfNeeded: ix[0]) * dimStride
            if ss == 1 && sd == 1 {
                d.update(from: base, count: n)
            } else {
                for i in 0..<n { d[i * sd] = base[i * ss] }
            }
        } else {
            for i in 0..<n { d[i * sd] = s[i * ss + Int(truncatingIfNeeded: ix[i * si]) * dimStride] }
        }
    }
}

/// Scatter-adds along `dim` in place: `dst[i with coordinate dim replaced by index[i]] += source[i]`.
///
/// Repeated indices accumulate. Runs sequentially in row-major order of `shape`, so the
/// result is deterministic.
///
/// - Parameters:
///   - dst: destination storage base; `dstStrides`/`dstOffset` describe it (extents may
///     exceed `shape`; only `dstStrides[dim]` is used along `dim`).
///   - source: values with strides over `shape` (stride 0 broadcasts).
///   - index: index values with strides over `shape`.
///   - shape: the index space.
/// Complexity: O(elements of `shape`).
@inlinable
public func scatterAddStrided<T: AdditiveArithmetic, I: BinaryInteger>(
    _ dst: UnsafeMutablePointer<T>, dstStrides: [Int], dstOffset: Int,
    _ source: UnsafePointer<T>, sourceStrides: [Int], sourceOffset: Int,
    _ index: UnsafePointer<I>, indexStrides: [Int], indexOffset: Int,
    shape: [Int], dim: Int
) {
    precondition(dim >= 0 && dim < shape.count, "scatterAddStrided: dim \(dim) out of range for rank \(shape.count)")
    let dimStride = dstStrides[dim]
    var walk = dstStrides
    walk[dim] = 0
    forEachStridedRow(shape: shape, strides: [walk, sourceStrides, indexStrides],
                      offsets: [dstOffset, sourceOffset, indexOffset]) { offs, n, inner in
        let d = dst + offs[0], s = source + offs[1], ix = index + offs[2]
        let sd = inner[0], ss = inner[1], si = inner[2]
        if si == 0 {
            let base = d + Int(truncatingIfNeeded: ix[0]) * dimStride
            for i in 0..<n { base[i * sd] += s[i * ss] }
        } else {
            for i in 0..<n { d[i * sd + Int(truncatingIfNeeded: ix[i * si]) * dimStride] += s[i * ss] }
        }
    }
}

/// Writes one-hot rows: for each label (row-major over `shape`) at linear position k,
/// sets `dst[k * numClasses + label] = one`.
///
/// `dst` must hold `elementCount(shape) * numClasses` zeros; labels must be in
/// `0..<numClasses` (validate with `firstIndexOutOfRange`).
@inlinable
public func oneHotFill<T, I: BinaryInteger>(
    _ labels: UnsafePointer<I>, shape: [Int], strides: [Int], offset: Int,
    numClasses: Int, one: T, _ dst: UnsafeMutablePointer<T>
) {
    var k = 0
    forEachStridedRow(shape: shape, strides: [strides], offsets: [offset]) { offs, n, inner in
        let p = labels + offs[0], s = inner[0]
        for i in 0..<n {
            dst[(k + i) * numClasses + Int(truncatingIfNeeded: p[i * s])] = one
        }
        k += n
    }
}
