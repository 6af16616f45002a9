/// Sorting and selection along one dimension of a strided tensor.
///
/// Order (as PyTorch): ascending puts NaN last, descending puts NaN first (NaN ranks
/// above +inf). Equal keys keep their original order (stable), so results do not
/// depend on the sort algorithm. Outputs are dense row-major; index outputs are Int64
/// positions along `dim`.

/// Whether `(key, index)` `a` comes before `b` in the sort order.
///
/// Ascending: smaller keys first, NaN last. Descending: larger keys first, NaN first.
/// Equal keys (and NaN vs NaN) are ordered by index, which makes any sort stable.
@inlinable @inline(__always)
public func sortPrecedes<T: BinaryFloatingPoint>(_ a: (T, Int), _ b: (T, Int), descending: Bool) -> Bool {
    let an = a.0.isNaN, bn = b.0.isNaN
    if an || bn {
        if an && bn { return a.1 < b.1 }
        return descending ? an : bn
    }
    if a.0 == b.0 { return a.1 < b.1 }
    return descending ? a.0 > b.0 : a.0 < b.0
}

/// A UInt32 whose unsigned order is the sort order of Float values: ascending with NaN
/// last, or (with `descending`) descending with NaN first. -0.0 and +0.0 get one key.
@inlinable @inline(__always)
public func floatSortKey(_ x: Float, descending: Bool) -> UInt32 {
    orderedSortKey(bits: x.bitPattern, isNaN: x.isNaN, isZero: x == 0, descending: descending)
}

/// A UInt64 whose unsigned order is the sort order of Double values (see `floatSortKey`).
@inlinable @inline(__always)
public func doubleSortKey(_ x: Double, descending: Bool) -> UInt64 {
    orderedSortKey(bits: x.bitPattern, isNaN: x.isNaN, isZero: x == 0, descending: descending)
}

/// The IEEE bit pattern `bits` made order-preserving as an unsigned integer: negative
/// values have every bit flipped, others the sign bit set; NaN is the largest key and both
/// zeros share one (then all bits flipped for `descending`).
@inlinable @inline(__always)
func orderedSortKey<K: FixedWidthInteger & UnsignedInteger>(bits: K, isNaN: Bool, isZero: Bool, descending: Bool) -> K {
    let sign = K(1) << (K.bitWidth - 1)
    var key: K
    if isNaN {
        key = .max
    } else {
        let b = isZero ? 0 : bits
        key = b & sign != 0 ? ~b : b | sign
    }
    return descending ? ~key : key
}

/// Lines at least this long are radix sorted (measured: from 256 elements on, radix sort
/// of Float32 keys beat the comparison sort of the same packed keys, 4-6x from 4096 on).
public let radixSortMinLength = 256

/// Stable LSD radix sort of `keys[0..<n]` by their bits `lowBit..<K.bitWidth`, one byte per
/// pass, moving `payload` (if any) along; a pass whose digit is the same for every key is
/// skipped. Scratch: `keysTmp` and `payloadTmp` of `n`, `counts` of 256 · passes.
/// (8-bit digits measured as fast as or faster than 11-bit ones at 256 and 1M elements and
/// 20% slower at 4096.) Complexity: O(passes · (n + 256)).
@inlinable
public func radixSort<K: FixedWidthInteger & UnsignedInteger>(
    _ keys: UnsafeMutablePointer<K>, payload: UnsafeMutablePointer<UInt32>?, count n: Int, lowBit: Int,
    keysTmp: UnsafeMutablePointer<K>, payloadTmp: UnsafeMutablePointer<UInt32>?, counts: UnsafeMutablePointer<Int>
) {
    if n < 2 { return }
    let digitBits = 8, buckets = 1 << digitBits
    let passes = (K.bitWidth - lowBit + digitBits - 1) / digitBits
    let mask = K(buckets - 1)
    // Every pass's histogram in one read of the keys.
    counts.initialize(repeating: 0, count: passes * buckets)
    for i in 0..<n {
        let k = keys[i] &>> K(lowBit)
        for p in 0..<passes { counts[p * buckets + Int((k &>> K(p * digitBits)) & mask)] += 1 }
    }
    var sk = keys, dk = keysTmp
    var sp = payload, dp = payloadTmp
    for p in 0..<passes {
        let c = counts + p * buckets
        let shift = K(lowBit + p * digitBits)
        if c[Int((sk[0] &>> shift) & mask)] == n { continue }
        var sum = 0
        for b in 0..<buckets { let x = c[b]; c[b] = sum; sum += x }
        if let spp = sp, let dpp = dp {
            for i in 0..<n {
                let k = sk[i]
                let b = Int((k &>> shift) & mask)
                let at = c[b]
                c[b] = at + 1
                dk[at] = k
                dpp[at] = spp[i]
            }
        } else {
            for i in 0..<n {
                let k = sk[i]
                let b = Int((k &>> shift) & mask)
                let at = c[b]
                c[b] = at + 1
                dk[at] = k
            }
        }
        swap(&sk, &dk)
        swap(&sp, &dp)
    }
    if sk != keys {
        keys.update(from: sk, count: n)
        if let spp = sp, let payload { payload.update(from: spp, count: n) }
    }
}

/// Sorts every line along `dim`, writing sorted values and their source positions.
///
/// - Parameters:
///   - values, indices: dense outputs with the source's shape.
/// Float32 lines sort packed integer keys (order-preserving bits, index in the low word),
/// which is several times faster than a comparator on (value, index) pairs; lines of
/// `radixSortMinLength` or more radix sort those keys (Float64 lines: 64-bit keys with the
/// index as payload), which keeps equal keys in index order.
/// Complexity: O(n) per line from `radixSortMinLength` on (4 byte passes for Float32, up
/// to 8 for Float64), else O(n log n); scratch of a few n per thread.
@inlinable
public func sortAlongDim<T: BinaryFloatingPoint>(
    _ src: UnsafePointer<T>, shape: [Int], strides: [Int], offset: Int, dim: Int, descending: Bool,
    values: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<Int64>
) {
    let n = shape[dim], st = strides[dim]
    if elementCount(shape) == 0 { return }
    let dstStrides = contiguousStrides(shape)
    let dst_st = dstStrides[dim]
    let lines = elementCount(shape) / n
    let grain = Swift.max(1, (KernelThreading.minChunk / 16) / n)
    if T.self == Float.self && n < (1 << 32) {
        // Float32: sort packed (order-preserving key << 32 | index) integers with plain `<`.
        let src32 = UnsafeRawPointer(src).assumingMemoryBound(to: Float.self)
        let values32 = UnsafeMutableRawPointer(values).assumingMemoryBound(to: Float.self)
        let radix = n >= radixSortMinLength
        parallelChunks(count: lines, grain: grain) { range in
            let keys = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: n)
            let tmp = UnsafeMutablePointer<UInt64>.allocate(capacity: radix ? n : 0)
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: radix ? 4 * 256 : 0)
            defer { keys.deallocate(); tmp.deallocate(); counts.deallocate() }
            forEachLine(shape: shape, dim: dim, strides: [strides, dstStrides], offsets: [offset, 0], lines: range) { offs in
                let p = src32 + offs[0]
                for i in 0..<n { keys[i] = UInt64(floatSortKey(p[i * st], descending: descending)) << 32 | UInt64(i) }
                if radix {
                    // Stable on the key bits; the indices are already in order.
                    radixSort(keys.baseAddress!, payload: nil, count: n, lowBit: 32, keysTmp: tmp, payloadTmp: nil, counts: counts)
                } else {
                    var buf = keys  // same memory; `sort` is mutating on the buffer value
                    buf.sort()
                }
                let ix = indices + offs[1], v = values32 + offs[1]
                for i in 0..<n {
                    let j = Int(keys[i] & 0xFFFF_FFFF)
                    ix[i * dst_st] = Int64(j)
                    v[i * dst_st] = p[j * st]
                }
            }
        }
        return
    }
    if T.self == Double.self && n >= radixSortMinLength && n < (1 << 32) {
        // Float64 (and integers, which sort as Float64): 64-bit keys, indices as payload.
        let src64 = UnsafeRawPointer(src).assumingMemoryBound(to: Double.self)
        let values64 = UnsafeMutableRawPointer(values).assumingMemoryBound(to: Double.self)
        parallelChunks(count: lines, grain: grain) { range in
            let keys = UnsafeMutablePointer<UInt64>.allocate(capacity: 2 * n)
            let order = UnsafeMutablePointer<UInt32>.allocate(capacity: 2 * n)
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: 8 * 256)
            defer { keys.deallocate(); order.deallocate(); counts.deallocate() }
            forEachLine(shape: shape, dim: dim, strides: [strides, dstStrides], offsets: [offset, 0], lines: range) { offs in
                let p = src64 + offs[0]
                for i in 0..<n {
                    keys[i] = doubleSortKey(p[i * st], descending: descending)
                    order[i] = UInt32(i)
                }
                radixSort(keys, payload: order, count: n, lowBit: 0, keysTmp: keys + n, payloadTmp: order + n, counts: counts)
                let ix = indices + offs[1], v = values64 + offs[1]
                for i in 0..<n {
                    let j = Int(order[i])
                    ix[i * dst_st] = Int64(j)
                    v[i * dst_st] = p[j * st]
                }
            }
        }
        return
    }
    parallelChunks(count: lines, grain: grain) { range in
        let scratch = UnsafeMutableBufferPointer<(T, Int)>.allocate(capacity: n)
        defer { scratch.deallocate() }
        forEachLine(shape: shape, dim: dim, strides: [strides, dstStrides], offsets: [offset, 0], lines: range) { offs in
            let p = src + offs[0]
            for i in 0..<n { scratch[i] = (p[i * st], i) }
            var buf = scratch  // same memory; `sort` is mutating on the buffer value
            if descending {
                buf.sort { sortPrecedes($0, $1, descending: true) }
            } else {
                buf.sort { sortPrecedes($0, $1, descending: false) }
            }
            let v = values + offs[1], ix = indices + offs[1]
            for i in 0..<n {
                v[i * dst_st] = scratch[i].0
                ix[i * dst_st] = Int64(scratch[i].1)
            }
        }
    }
}

/// The `k` largest (or smallest) elements of every line along `dim`, with their positions.
///
/// Uses the sort order of `sortAlongDim` (descending for `largest`, so NaN counts as
/// the largest value; ties prefer the lower index). With `sorted` the k results come
/// in that order; otherwise they come in increasing index order.
///
/// - Parameters:
///   - values, indices: dense outputs with the source's shape except `k` along `dim`.
/// Complexity: O(n log k) per line (a bounded heap), plus O(k log k) to order the result.
@inlinable
public func topkAlongDim<T: BinaryFloatingPoint>(
    _ src: UnsafePointer<T>, shape: [Int], strides: [Int], offset: Int, dim: Int, k: Int,
    largest: Bool, sorted: Bool, values: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<Int64>
) {
    let n = shape[dim], st = strides[dim]
    precondition(k >= 0 && k <= n, "topk: k = \(k) out of range for dimension \(dim) of size \(n) (shape \(shape))")
    var outShape = shape
    outShape[dim] = k
    if elementCount(outShape) == 0 { return }
    let dstStrides = contiguousStrides(outShape)
    let dst_st = dstStrides[dim]
    let desc = largest
    let lines = elementCount(outShape) / k
    let grain = Swift.max(1, (KernelThreading.minChunk / 16) / Swift.max(n, 1))
    parallelChunks(count: lines, grain: grain) { range in
        // heap[0] is the worst of the k best seen so far (a max-heap under `precedes`).
        let heap = UnsafeMutableBufferPointer<(T, Int)>.allocate(capacity: k)
        defer { heap.deallocate() }
        forEachLine(shape: shape, dim: dim, strides: [strides, dstStrides], offsets: [offset, 0], lines: range) { offs in
            let p = src + offs[0]
            var size = 0
            for i in 0..<n {
                let item = (p[i * st], i)
                if size < k {
                    // Sift up: parents must not precede their children.
                    var c = size
                    heap[c] = item
                    size += 1
                    while c > 0 {
                        let parent = (c - 1) / 2
                        if sortPrecedes(heap[parent], heap[c], descending: desc) {
                            heap.swapAt(parent, c)
                            c = parent
                        } else { break }
                    }
                } else if sortPrecedes(item, heap[0], descending: desc) {
                    heap[0] = item
                    var c = 0
                    while true {
                        let l = 2 * c + 1, r = l + 1
                        var worst = c
                        if l < k && sortPrecedes(heap[worst], heap[l], descending: desc) { worst = l }
                        if r < k && sortPrecedes(heap[worst], heap[r], descending: desc) { worst = r }
                        if worst == c { break }
                        heap.swapAt(c, worst)
                        c = worst
                    }
                }
            }
            var buf = heap  // same memory; `sort` is mutating on the buffer value
            if sorted {
                buf.sort { sortPrecedes($0, $1, descending: desc) }
            } else {
                buf.sort { $0.1 < $1.1 }
            }
            let v = values + offs[1], ix = indices + offs[1]
            for i in 0..<k {
                v[i * dst_st] = heap[i].0
                ix[i * dst_st] = Int64(heap[i].1)
            }
        }
    }
}

/// Adds each source element into `dst` at the position its index names along `dim`.
///
/// `dst[..., index[..., j, ...], ...] += src[..., j, ...]`, where `src` and `index` are
/// dense with shape `srcShape` and `dst` is dense with shape `dstShape` (equal to
/// `srcShape` except along `dim`). This is the gradient of sort, topk and max along a dim.
/// Complexity: O(elements of src).
@inlinable
public func scatterAddAlongDim<T: AdditiveArithmetic>(
    _ src: UnsafePointer<T>, index: UnsafePointer<Int64>, srcShape: [Int], dim: Int,
    _ dst: UnsafeMutablePointer<T>, dstShape: [Int]
) {
    precondition(srcShape.count == dstShape.count, "scatterAddAlongDim: ranks of \(srcShape) and \(dstShape) differ")
    for d in 0..<srcShape.count where d != dim {
        precondition(srcShape[d] == dstShape[d], "scatterAddAlongDim: shapes \(srcShape) and \(dstShape) differ outside dimension \(dim)")
    }
    if elementCount(srcShape) == 0 { return }
    let n = srcShape[dim], m = dstShape[dim]
    let sStrides = contiguousStrides(srcShape), dStrides = contiguousStrides(dstShape)
    let ss = sStrides[dim], ds = dStrides[dim]
    forEachLine(shape: srcShape, dim: dim, strides: [sStrides, dStrides], offsets: [0, 0]) { offs in
        let s = src + offs[0], ix = index + offs[0], d = dst + offs[1]
        for j in 0..<n {
            let t = Int(ix[j * ss])
            precondition(t >= 0 && t < m, "scatterAddAlongDim: index \(t) out of range for dimension \(dim) of size \(m)")
            d[t * ds] += s[j * ss]
        }
    }
}
