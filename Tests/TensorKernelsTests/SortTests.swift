import XCTest
import TensorKernels

/// sortAlongDim, topkAlongDim and scatterAddAlongDim against naive loops.
final class SortTests: XCTestCase {
    typealias F = ReduceFixture

    /// The naive order: stable insertion sort of (value, index) pairs, NaN above every number.
    static func naiveOrder(_ line: [Double], descending: Bool) -> [Int] {
        func key(_ i: Int) -> (Bool, Double) { (line[i].isNaN, line[i].isNaN ? 0 : line[i]) }
        var order: [Int] = []
        for i in 0..<line.count {
            var pos = order.count
            // Insert after every element that ranks before or equal to i (stability).
            while pos > 0 {
                let j = order[pos - 1]
                let (jn, jv) = key(j), (inan, iv) = key(i)
                let iBeforeJ: Bool
                if jn != inan { iBeforeJ = descending ? inan : jn } else { iBeforeJ = !jn && (descending ? iv > jv : iv < jv) }
                if iBeforeJ { pos -= 1 } else { break }
            }
            order.insert(i, at: pos)
        }
        return order
    }

    static func line(_ v: F.View, _ outer: [Int], dim: Int) -> [Double] {
        (0..<v.shape[dim]).map { i in var full = outer; full.insert(i, at: dim); return v.at(full) }
    }

    func testSortMatchesNaiveStableOrderWithTiesAndNaN() {
        var rng = F.Rand(21)
        for shape in F.shapes(&rng) where !shape.isEmpty {
            for layout in F.Layout.allCases {
                let v = F.view(shape, layout, &rng) { r in r.int(9) == 0 ? .nan : r.tie() }
                for dim in 0..<shape.count {
                    for descending in [false, true] {
                        let n = elementCount(shape)
                        var values = [Double](repeating: 0, count: n), indices = [Int64](repeating: -1, count: n)
                        v.buffer.withUnsafeBufferPointer { b in
                            sortAlongDim(b.baseAddress!, shape: shape, strides: v.strides, offset: v.offset, dim: dim, descending: descending,
                                         values: &values, indices: &indices)
                        }
                        var outer = shape
                        outer.remove(at: dim)
                        let ds = contiguousStrides(shape)
                        for o in F.multiIndices(outer) {
                            let l = Self.line(v, o, dim: dim)
                            let order = Self.naiveOrder(l, descending: descending)
                            var full = o
                            full.insert(0, at: dim)
                            var base = 0
                            for d in 0..<full.count { base += full[d] * ds[d] }
                            for j in 0..<l.count {
                                XCTAssertEqual(indices[base + j * ds[dim]], Int64(order[j]), "sort \(shape) \(layout) dim \(dim) desc \(descending) line \(o)")
                                let got = values[base + j * ds[dim]], want = l[order[j]]
                                XCTAssert(got == want || (got.isNaN && want.isNaN), "value \(got) vs \(want)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testFloat32SortUsesTheSameOrderWithSpecialValues() {
        // The Float32 path sorts packed integer keys: check ties, ±0, ±inf and NaN.
        var rng = F.Rand(26)
        let specials: [Float] = [0, -0.0, .infinity, -.infinity, .nan, 1, -1, .leastNonzeroMagnitude, -.greatestFiniteMagnitude]
        for (shape, dim) in [([3, 40], 1), ([40, 3], 0), ([2, 7, 5], 1), ([1], 0), ([0, 4], 1)] {
            let n = elementCount(shape)
            let xs = (0..<n).map { _ in rng.int(3) == 0 ? specials[rng.int(specials.count)] : Float(rng.tie()) }
            for descending in [false, true] {
                var values = [Float](repeating: 0, count: n), indices = [Int64](repeating: -1, count: n)
                sortAlongDim(xs, shape: shape, strides: contiguousStrides(shape), offset: 0, dim: dim, descending: descending,
                             values: &values, indices: &indices)
                let ds = contiguousStrides(shape)
                var outer = shape
                outer.remove(at: dim)
                for o in F.multiIndices(outer) {
                    var full = o
                    full.insert(0, at: dim)
                    var base = 0
                    for d in 0..<full.count { base += full[d] * ds[d] }
                    let line = (0..<shape[dim]).map { Double(xs[base + $0 * ds[dim]]) }
                    let order = Self.naiveOrder(line, descending: descending)
                    let got = (0..<shape[dim]).map { Int(indices[base + $0 * ds[dim]]) }
                    XCTAssertEqual(got, order, "float sort \(shape) dim \(dim) desc \(descending) line \(o): \(line)")
                    for j in 0..<shape[dim] {
                        let gv = values[base + j * ds[dim]], wv = Float(line[order[j]])
                        XCTAssert(gv.bitPattern == wv.bitPattern || (gv.isNaN && wv.isNaN))
                    }
                }
            }
        }
    }

    func testSortLongLinesAcrossThreads() {
        var rng = F.Rand(22)
        let shape = [64, 1500]
        let v = F.view(shape, .stepped, &rng)
        var values = [Double](repeating: 0, count: 64 * 1500), indices = [Int64](repeating: 0, count: 64 * 1500)
        v.buffer.withUnsafeBufferPointer { b in
            sortAlongDim(b.baseAddress!, shape: shape, strides: v.strides, offset: v.offset, dim: 1, descending: false,
                         values: &values, indices: &indices)
        }
        for r in 0..<64 {
            let l = Self.line(v, [r], dim: 1)
            XCTAssertEqual(Array(values[(r * 1500)..<((r + 1) * 1500)]), l.sorted(), "row \(r)")
            for j in 0..<1500 { XCTAssertEqual(l[Int(indices[r * 1500 + j])], values[r * 1500 + j]) }
        }
    }

    func testTopkMatchesNaive() {
        var rng = F.Rand(23)
        for shape in F.shapes(&rng) where !shape.isEmpty {
            for layout in F.Layout.allCases {
                let v = F.view(shape, layout, &rng) { r in r.int(11) == 0 ? .nan : r.tie() }
                for dim in 0..<shape.count {
                    let n = shape[dim]
                    for k in Set([0, 1, n / 2, n]) where k <= n {
                        for largest in [true, false] {
                            for sorted in [true, false] {
                                var outShape = shape
                                outShape[dim] = k
                                let m = elementCount(outShape)
                                var values = [Double](repeating: 0, count: m), indices = [Int64](repeating: -1, count: m)
                                v.buffer.withUnsafeBufferPointer { b in
                                    topkAlongDim(b.baseAddress!, shape: shape, strides: v.strides, offset: v.offset, dim: dim, k: k,
                                                 largest: largest, sorted: sorted, values: &values, indices: &indices)
                                }
                                var outer = shape
                                outer.remove(at: dim)
                                let ds = contiguousStrides(outShape)
                                for o in F.multiIndices(outer) {
                                    let l = Self.line(v, o, dim: dim)
                                    var want = Array(Self.naiveOrder(l, descending: largest).prefix(k))
                                    if !sorted { want.sort() }
                                    var full = o
                                    full.insert(0, at: dim)
                                    var base = 0
                                    for d in 0..<full.count { base += full[d] * ds[d] }
                                    let got = (0..<k).map { Int(indices[base + $0 * ds[dim]]) }
                                    XCTAssertEqual(got, want, "topk \(shape) \(layout) dim \(dim) k \(k) largest \(largest) sorted \(sorted)")
                                    for j in 0..<k {
                                        let gv = values[base + j * ds[dim]], wv = l[want[j]]
                                        XCTAssert(gv == wv || (gv.isNaN && wv.isNaN))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func testTopkOfLongLineUsesTheHeapCorrectly() {
        var rng = F.Rand(24)
        let v = F.view([1, 5000], .contiguous, &rng)
        var values = [Double](repeating: 0, count: 7), indices = [Int64](repeating: 0, count: 7)
        v.buffer.withUnsafeBufferPointer { b in
            topkAlongDim(b.baseAddress!, shape: [1, 5000], strides: v.strides, offset: 0, dim: 1, k: 7,
                         largest: true, sorted: true, values: &values, indices: &indices)
        }
        XCTAssertEqual(values, Array(Self.line(v, [0], dim: 1).sorted(by: >).prefix(7)))
    }

    func testScatterAddAlongDimMatchesNaive() {
        var rng = F.Rand(25)
        for (srcShape, dstShape, dim) in [([2, 3], [2, 5], 1), ([4, 2], [3, 2], 0), ([2, 3, 4], [2, 3, 1], 2), ([0, 3], [0, 3], 0),
                                          ([3, 1, 2], [3, 4, 2], 1), ([5], [2], 0)] {
            let n = elementCount(srcShape)
            let src = (0..<n).map { _ in rng.double() }
            let index = (0..<n).map { _ in Int64(rng.int(dstShape[dim])) }
            var dst = [Double](repeating: 0, count: elementCount(dstShape))
            scatterAddAlongDim(src, index: index, srcShape: srcShape, dim: dim, &dst, dstShape: dstShape)
            var ref = [Double](repeating: 0, count: dst.count)
            let ds = contiguousStrides(dstShape)
            for (linear, idx) in F.multiIndices(srcShape).enumerated() {
                var t = idx
                t[dim] = Int(index[linear])
                var o = 0
                for d in 0..<t.count { o += t[d] * ds[d] }
                ref[o] += src[linear]
            }
            for i in 0..<ref.count { F.assertClose(dst[i], ref[i], "scatter \(srcShape) -> \(dstShape) dim \(dim) [\(i)]") }
        }
    }
}

/// The radix-sorted lines (from `radixSortMinLength` elements): Float32 and Float64 keys
/// with many ties, ±0, ±inf and NaN, both directions, strided lines, against the naive
/// stable order.
final class RadixSortTests: XCTestCase {
    typealias F = ReduceFixture

    static func check<T: BinaryFloatingPoint>(_ xs: [T], shape: [Int], strides: [Int], offset: Int, dim: Int, descending: Bool,
                                               file: StaticString = #filePath, line: UInt = #line) {
        let n = elementCount(shape)
        var values = [T](repeating: 0, count: n), indices = [Int64](repeating: -1, count: n)
        xs.withUnsafeBufferPointer { b in
            sortAlongDim(b.baseAddress!, shape: shape, strides: strides, offset: offset, dim: dim, descending: descending,
                         values: &values, indices: &indices)
        }
        let ds = contiguousStrides(shape)
        var outer = shape
        outer.remove(at: dim)
        for o in F.multiIndices(outer) {
            var full = o
            full.insert(0, at: dim)
            var src = offset, dst = 0
            for d in 0..<full.count { src += full[d] * strides[d]; dst += full[d] * ds[d] }
            let l = (0..<shape[dim]).map { Double(xs[src + $0 * strides[dim]]) }
            let order = SortTests.naiveOrder(l, descending: descending)
            let got = (0..<shape[dim]).map { Int(indices[dst + $0 * ds[dim]]) }
            XCTAssertEqual(got, order, "\(T.self) shape \(shape) dim \(dim) desc \(descending) line \(o)", file: file, line: line)
            for j in 0..<shape[dim] {
                let gv = values[dst + j * ds[dim]], wv = xs[src + order[j] * strides[dim]]
                XCTAssert(gv == wv && gv.sign == wv.sign || (gv.isNaN && wv.isNaN), "value \(gv) vs \(wv)", file: file, line: line)
            }
        }
    }

    static func values<T: BinaryFloatingPoint>(_ count: Int, _ rng: inout F.Rand, _: T.Type) -> [T] {
        let specials: [T] = [0, -0.0, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, -.greatestFiniteMagnitude, 1e-30, -1e30]
        return (0..<count).map { _ in
            switch rng.int(4) {
            case 0: return specials[rng.int(specials.count)]
            case 1: return T(rng.tie())                 // many exact ties
            default: return T(rng.double() * 1e3)       // mostly distinct values
            }
        }
    }

    func testRadixSortedLinesMatchNaiveStableOrder() {
        var rng = F.Rand(27)
        let n = radixSortMinLength
        for (shape, dim) in [([n], 0), ([3, n + 45], 1), ([n + 7, 3], 0), ([2, 1031], 1), ([2, 300, 2], 1)] {
            let count = elementCount(shape)
            let f = Self.values(count, &rng, Float.self), d = Self.values(count, &rng, Double.self)
            for descending in [false, true] {
                Self.check(f, shape: shape, strides: contiguousStrides(shape), offset: 0, dim: dim, descending: descending)
                Self.check(d, shape: shape, strides: contiguousStrides(shape), offset: 0, dim: dim, descending: descending)
            }
        }
        // A strided (every other element, offset) long line.
        let m = 2 * 700 + 3
        let f = Self.values(m, &rng, Float.self), d = Self.values(m, &rng, Double.self)
        Self.check(f, shape: [700], strides: [2], offset: 3, dim: 0, descending: false)
        Self.check(d, shape: [700], strides: [2], offset: 3, dim: 0, descending: true)
    }

    func testRadixSortKeepsPayloadWithSkippedPasses() {
        // Keys that agree on most bytes (skipped passes) and an all-equal line.
        var keys: [UInt64] = (0..<1000).map { UInt64(0xABCD_0000_0000_0000) | UInt64(($0 * 7919) % 600) }
        var payload: [UInt32] = (0..<1000).map { UInt32($0) }
        let want = zip(keys, payload).sorted { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        var tk = [UInt64](repeating: 0, count: 1000), tp = [UInt32](repeating: 0, count: 1000), counts = [Int](repeating: 0, count: 8 * 256)
        radixSort(&keys, payload: &payload, count: 1000, lowBit: 0, keysTmp: &tk, payloadTmp: &tp, counts: &counts)
        XCTAssertEqual(keys, want.map { $0.0 })
        XCTAssertEqual(payload, want.map { $0.1 })
        var same = [UInt64](repeating: 5, count: 300), ids = (0..<300).map { UInt32($0) }
        radixSort(&same, payload: &ids, count: 300, lowBit: 0, keysTmp: &tk, payloadTmp: &tp, counts: &counts)
        XCTAssertEqual(ids, (0..<300).map { UInt32($0) })
    }
}
