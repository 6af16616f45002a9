/// Transposing copies: the inner two dims swap which side is contiguous
/// (`src` has unit stride on the rows dim, `dst` on the columns dim).
///
/// Row by row, one side strides through memory and every element is a cache (and TLB)
/// miss. Here the copy walks 128x128 tiles; inside a tile, 4-byte elements move as 8x8
/// blocks transposed in SIMD registers and 8-byte elements as 4x4 blocks, so each load
/// and store is a full vector. Row bands are shared among Loom's worker threads.
/// Measured on a 2048² Float copy (4 KiB pages, loaded machine): 128x128 tiles 8-9 ms,
/// 64x64 10 ms, 32x32 12-13 ms, the scalar 32x32 tiles before 14-19 ms; what is left is
/// mostly TLB misses (the same kernel on 2 MiB pages ran in 3.7 ms).

/// Splits the pairs `(a[2k], a[2k+1])` into even and odd lanes: one of `log2(lanes)`
/// rounds of a register transpose (each round rotates the (row, lane) index bits by one).
@inlinable @inline(__always)
func unzipLanes(_ a: SIMD8<UInt32>, _ b: SIMD8<UInt32>) -> (even: SIMD8<UInt32>, odd: SIMD8<UInt32>) {
    (SIMD8(lowHalf: a.evenHalf, highHalf: b.evenHalf), SIMD8(lowHalf: a.oddHalf, highHalf: b.oddHalf))
}

/// `d[c * ld + r] = s[r * ls + c]` for an 8x8 block of 4-byte elements (8 loads, 24
/// shuffles, 8 stores).
@inlinable @inline(__always)
func transposeBlock8x8(_ s: UnsafeRawPointer, _ ls: Int, _ d: UnsafeMutableRawPointer, _ ld: Int) {
    typealias V = SIMD8<UInt32>
    var v0 = s.loadUnaligned(as: V.self), v1 = s.loadUnaligned(fromByteOffset: 4 * ls, as: V.self)
    var v2 = s.loadUnaligned(fromByteOffset: 8 * ls, as: V.self), v3 = s.loadUnaligned(fromByteOffset: 12 * ls, as: V.self)
    var v4 = s.loadUnaligned(fromByteOffset: 16 * ls, as: V.self), v5 = s.loadUnaligned(fromByteOffset: 20 * ls, as: V.self)
    var v6 = s.loadUnaligned(fromByteOffset: 24 * ls, as: V.self), v7 = s.loadUnaligned(fromByteOffset: 28 * ls, as: V.self)
    // Row r, lane c has index bits (r2 r1 r0 c2 c1 c0); each round rotates them right by
    // one, so three rounds leave element (r, c) in row c, lane r.
    for _ in 0..<3 {
        let a = unzipLanes(v0, v1), b = unzipLanes(v2, v3), c = unzipLanes(v4, v5), e = unzipLanes(v6, v7)
        v0 = a.even; v1 = b.even; v2 = c.even; v3 = e.even
        v4 = a.odd; v5 = b.odd; v6 = c.odd; v7 = e.odd
    }
    d.storeBytes(of: v0, as: V.self); (d + 4 * ld).storeBytes(of: v1, as: V.self)
    (d + 8 * ld).storeBytes(of: v2, as: V.self); (d + 12 * ld).storeBytes(of: v3, as: V.self)
    (d + 16 * ld).storeBytes(of: v4, as: V.self); (d + 20 * ld).storeBytes(of: v5, as: V.self)
    (d + 24 * ld).storeBytes(of: v6, as: V.self); (d + 28 * ld).storeBytes(of: v7, as: V.self)
}

/// `d[c * ld + r] = s[r * ls + c]` for a 4x4 block of 8-byte elements.
@inlinable @inline(__always)
func transposeBlock4x4(_ s: UnsafeRawPointer, _ ls: Int, _ d: UnsafeMutableRawPointer, _ ld: Int) {
    typealias V = SIMD4<UInt64>
    var v0 = s.loadUnaligned(as: V.self), v1 = s.loadUnaligned(fromByteOffset: 8 * ls, as: V.self)
    var v2 = s.loadUnaligned(fromByteOffset: 16 * ls, as: V.self), v3 = s.loadUnaligned(fromByteOffset: 24 * ls, as: V.self)
    for _ in 0..<2 {
        let a0 = V(lowHalf: v0.evenHalf, highHalf: v1.evenHalf), a2 = V(lowHalf: v0.oddHalf, highHalf: v1.oddHalf)
        let a1 = V(lowHalf: v2.evenHalf, highHalf: v3.evenHalf), a3 = V(lowHalf: v2.oddHalf, highHalf: v3.oddHalf)
        v0 = a0; v1 = a1; v2 = a2; v3 = a3
    }
    d.storeBytes(of: v0, as: V.self); (d + 8 * ld).storeBytes(of: v1, as: V.self)
    (d + 16 * ld).storeBytes(of: v2, as: V.self); (d + 24 * ld).storeBytes(of: v3, as: V.self)
}

/// Copies `rows` x `cols` elements with `dst[i * dstRowStride + j] = src[i + j * srcColStride]`
/// (unit stride on rows in `src`, on columns in `dst`), for rows in `rowRange`.
@inlinable
func transposeBand<T>(_ src: UnsafePointer<T>, srcColStride s1: Int, _ dst: UnsafeMutablePointer<T>, dstRowStride d0: Int,
                      rows rowRange: Range<Int>, cols: Int) {
    let tile = 128
    let size = MemoryLayout<T>.size
    let block = size == 4 && MemoryLayout<T>.stride == 4 ? 8 : (size == 8 && MemoryLayout<T>.stride == 8 ? 4 : 1)
    let iEnd = rowRange.lowerBound + rowRange.count / block * block, jEnd = cols / block * block
    var i0 = rowRange.lowerBound
    while i0 < rowRange.upperBound {
        let i1 = Swift.min(i0 + tile, rowRange.upperBound)
        var j0 = 0
        while j0 < cols {
            let j1 = Swift.min(j0 + tile, cols)
            if block > 1 {
                // Whole blocks of the tile in registers.
                let bi1 = Swift.max(i0, Swift.min(i1, iEnd)), bj1 = Swift.max(j0, Swift.min(j1, jEnd))
                var i = i0
                while i < bi1 {
                    var j = j0
                    while j < bj1 {
                        let s = UnsafeRawPointer(src + i + j * s1), d = UnsafeMutableRawPointer(dst + i * d0 + j)
                        if block == 8 { transposeBlock8x8(s, s1, d, d0) } else { transposeBlock4x4(s, s1, d, d0) }
                        j += block
                    }
                    i += block
                }
                // The tile's ragged right edge and bottom edge, element by element.
                for i in i0..<bi1 where bj1 < j1 {
                    for j in bj1..<j1 { dst[i * d0 + j] = src[i + j * s1] }
                }
                for i in bi1..<i1 {
                    for j in j0..<j1 { dst[i * d0 + j] = src[i + j * s1] }
                }
            } else {
                for i in i0..<i1 {
                    let s = src + i, d = dst + i * d0
                    for j in j0..<j1 { d[j] = s[j * s1] }
                }
            }
            j0 = j1
        }
        i0 = i1
    }
}

/// Copies a coalesced layout whose last two dims transpose (`srcStrides[r-2] == 1`,
/// `dstStrides[r-1] == 1`), looping over any leading dims. Threads take bands of 128 rows.
@inlinable
func transposeCopy<T>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>, shape: [Int], srcStrides: [Int], dstStrides: [Int]) {
    let r = shape.count
    let rows = shape[r - 2], cols = shape[r - 1]
    let s1 = srcStrides[r - 1], d0 = dstStrides[r - 2]
    let outerShape = Array(shape[0..<(r - 2)])
    let outer = elementCount(outerShape)
    let band = 128
    let bands = (rows + band - 1) / band
    let items = outer * bands
    // Offsets of one outer index (row-major over the leading dims).
    func offsets(_ o: Int) -> (Int, Int) {
        var rem = o, so = 0, dOff = 0
        for d in stride(from: r - 3, through: 0, by: -1) {
            let k = rem % shape[d]
            rem /= shape[d]
            so += k * srcStrides[d]; dOff += k * dstStrides[d]
        }
        return (so, dOff)
    }
    func run(_ itemRange: Range<Int>) {
        for item in itemRange {
            let (so, dOff) = offsets(item / bands)
            let b = item % bands
            transposeBand(src + so, srcColStride: s1, dst + dOff, dstRowStride: d0,
                          rows: (b * band)..<Swift.min(rows, (b + 1) * band), cols: cols)
        }
    }
    let total = outer * rows * cols
    if KernelThreading.maxThreads < 2 || total < 2 * KernelThreading.minChunk || items < 2 {
        run(0..<items)
        return
    }
    let pieces = Swift.min(items, 4 * KernelThreading.maxThreads)
    concurrentIterations(pieces) { p in run((items * p / pieces)..<(items * (p + 1) / pieces)) }
}
