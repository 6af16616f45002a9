import XCTest
import TensorKernels

/// Index kernels against naive multi-index loops, on random data, edge shapes and strided layouts.
final class IndexTests: XCTestCase {
    /// A small deterministic generator (kernel tests do not depend on TensorCore).
    struct LCG {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        mutating func int(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound)) }
        mutating func double() -> Double { Double(next() % 10_000) / 1000 - 5 }
    }


    static func offset(_ idx: [Int], _ strides: [Int], _ base: Int) -> Int {
        var o = base
        for (i, s) in zip(idx, strides) { o += i * s }
        return o
    }

    /// A layout for `shape` inside a buffer: contiguous, or permuted (a transposed view) with an offset.
    static func layout(_ shape: [Int], permuted: Bool, offset: Int) -> (strides: [Int], bufferCount: Int) {
        if !permuted { return (contiguousStrides(shape), offset + max(elementCount(shape), 1)) }
        // Lay the dims out in reverse order, with one padding element per innermost row.
        var strides = [Int](repeating: 0, count: shape.count)
        var acc = 1
        for d in 0..<shape.count {
            strides[d] = acc
            acc *= max(shape[d], 1) + (d == 0 ? 1 : 0)
        }
        return (strides, offset + acc)
    }

    struct Case {
        var srcShape: [Int]
        var indexShape: [Int]
        var dim: Int
    }

    static let cases: [Case] = [
        Case(srcShape: [5], indexShape: [7], dim: 0),
        Case(srcShape: [3, 4], indexShape: [3, 4], dim: 0),
        Case(srcShape: [3, 4], indexShape: [2, 6], dim: 1),
        Case(srcShape: [4, 5, 3], indexShape: [2, 5, 3], dim: 1),
        Case(srcShape: [4, 5, 3], indexShape: [4, 1, 2], dim: 2),
        Case(srcShape: [1, 1], indexShape: [1, 3], dim: 1),
        Case(srcShape: [2, 3], indexShape: [0, 3], dim: 0),
        Case(srcShape: [2, 3], indexShape: [2, 0], dim: 1),
        Case(srcShape: [7, 1, 5], indexShape: [3, 1, 5], dim: 0),
    ]

    func testGatherMatchesNaiveLoop() {
        var rng = LCG(state: 11)
        for c in Self.cases {
            for srcPermuted in [false, true] {
                for indexPermuted in [false, true] {
                    let (ss, sn) = Self.layout(c.srcShape, permuted: srcPermuted, offset: 3)
                    let (isr, inn) = Self.layout(c.indexShape, permuted: indexPermuted, offset: 2)
                    let src = (0..<sn).map { _ in rng.double() }
                    var index = [Int64](repeating: -99, count: inn)
                    for m in ReduceFixture.multiIndices(c.indexShape) { index[Self.offset(m, isr, 2)] = Int64(rng.int(c.srcShape[c.dim])) }
                    let n = elementCount(c.indexShape)
                    var dst = [Double](repeating: .nan, count: n)
                    src.withUnsafeBufferPointer { s in
                        index.withUnsafeBufferPointer { ix in
                            dst.withUnsafeMutableBufferPointer { d in
                                gatherStrided(s.baseAddress!, srcStrides: ss, srcOffset: 3, ix.baseAddress!, indexStrides: isr, indexOffset: 2,
                                              shape: c.indexShape, dim: c.dim, d.baseAddress!)
                            }
                        }
                    }
                    var expected: [Double] = []
                    for m in ReduceFixture.multiIndices(c.indexShape) {
                        var sIdx = m
                        sIdx[c.dim] = Int(index[Self.offset(m, isr, 2)])
                        expected.append(src[Self.offset(sIdx, ss, 3)])
                    }
                    XCTAssertEqual(dst, expected, "case \(c) srcPermuted \(srcPermuted) indexPermuted \(indexPermuted)")
                }
            }
        }
    }

    func testGatherWithBroadcastIndexCopiesRows() {
        // index_select style: one index per position along dim 0, stride 0 elsewhere (Int32 indices).
        var rng = LCG(state: 5)
        for (rows, cols, picks) in [(5, 4, 7), (1, 1, 1), (3, 9, 2), (4, 0, 3), (6, 3, 0)] {
            let src = (0..<(rows * cols)).map { _ in Float(rng.double()) }
            let index = (0..<picks).map { _ in Int32(rng.int(rows)) }
            var dst = [Float](repeating: .nan, count: picks * cols)
            src.withUnsafeBufferPointer { s in
                index.withUnsafeBufferPointer { ix in
                    dst.withUnsafeMutableBufferPointer { d in
                        gatherStrided(s.baseAddress ?? UnsafePointer(bitPattern: 8)!, srcStrides: [cols, 1], srcOffset: 0,
                                      ix.baseAddress ?? UnsafePointer(bitPattern: 8)!, indexStrides: [1, 0], indexOffset: 0,
                                      shape: [picks, cols], dim: 0, d.baseAddress ?? UnsafeMutablePointer(bitPattern: 8)!)
                    }
                }
            }
            var expected: [Float] = []
            for p in 0..<picks { for j in 0..<cols { expected.append(src[Int(index[p]) * cols + j]) } }
            XCTAssertEqual(dst, expected, "rows \(rows) cols \(cols) picks \(picks)")
            // The same selection along dim 1 of a transposed view.
            if cols > 0 && picks > 0 {
                var dstT = [Float](repeating: .nan, count: cols * picks)
                src.withUnsafeBufferPointer { s in
                    index.withUnsafeBufferPointer { ix in
                        dstT.withUnsafeMutableBufferPointer { d in
                            gatherStrided(s.baseAddress!, srcStrides: [1, cols], srcOffset: 0, ix.baseAddress!, indexStrides: [0, 1], indexOffset: 0,
                                          shape: [cols, picks], dim: 1, d.baseAddress!)
                        }
                    }
                }
                var expectedT: [Float] = []
                for j in 0..<cols { for p in 0..<picks { expectedT.append(src[Int(index[p]) * cols + j]) } }
                XCTAssertEqual(dstT, expectedT)
            }
        }
    }

    func testScatterAddMatchesNaiveLoopAndAccumulatesRepeats() {
        var rng = LCG(state: 23)
        for c in Self.cases {
            for permuted in [false, true] {
                // dst: dense buffer of srcShape at offset 1; source: layout over a shape >= index shape.
                let dstShape = c.srcShape
                let dstStrides = contiguousStrides(dstShape)
                let dstCount = 1 + elementCount(dstShape)
                let base = (0..<dstCount).map { _ in rng.double() }
                let (srcS, srcN) = Self.layout(c.indexShape, permuted: permuted, offset: 4)
                let source = (0..<srcN).map { _ in rng.double() }
                let (isr, inn) = Self.layout(c.indexShape, permuted: !permuted, offset: 0)
                var index = [Int32](repeating: 0, count: inn)
                // Few distinct targets so that repeats are common.
                for m in ReduceFixture.multiIndices(c.indexShape) { index[Self.offset(m, isr, 0)] = Int32(rng.int(min(2, c.srcShape[c.dim]))) }
                var dst = base
                dst.withUnsafeMutableBufferPointer { d in
                    source.withUnsafeBufferPointer { s in
                        index.withUnsafeBufferPointer { ix in
                            scatterAddStrided(d.baseAddress!, dstStrides: dstStrides, dstOffset: 1, s.baseAddress!, sourceStrides: srcS, sourceOffset: 4,
                                              ix.baseAddress!, indexStrides: isr, indexOffset: 0, shape: c.indexShape, dim: c.dim)
                        }
                    }
                }
                var expected = base
                for m in ReduceFixture.multiIndices(c.indexShape) {
                    var t = m
                    t[c.dim] = Int(index[Self.offset(m, isr, 0)])
                    expected[Self.offset(t, dstStrides, 1)] += source[Self.offset(m, srcS, 4)]
                }
                XCTAssertEqual(dst.count, expected.count)
                for i in 0..<dst.count {
                    XCTAssertEqual(dst[i], expected[i], accuracy: 1e-12, "case \(c) permuted \(permuted) element \(i)")
                }
            }
        }
    }

    func testScatterAddWithBroadcastIndexAccumulatesRows() {
        // index_add style, with repeated rows: dst[index[p], j] += source[p, j].
        let rows = 3, cols = 4
        let index: [Int64] = [2, 0, 2, 2]
        let source = (0..<(index.count * cols)).map { Double($0) }
        var dst = [Double](repeating: 0, count: rows * cols)
        dst.withUnsafeMutableBufferPointer { d in
            source.withUnsafeBufferPointer { s in
                index.withUnsafeBufferPointer { ix in
                    scatterAddStrided(d.baseAddress!, dstStrides: [cols, 1], dstOffset: 0, s.baseAddress!, sourceStrides: [cols, 1], sourceOffset: 0,
                                      ix.baseAddress!, indexStrides: [1, 0], indexOffset: 0, shape: [index.count, cols], dim: 0)
                }
            }
        }
        var expected = [Double](repeating: 0, count: rows * cols)
        for (p, r) in index.enumerated() { for j in 0..<cols { expected[Int(r) * cols + j] += source[p * cols + j] } }
        XCTAssertEqual(dst, expected)
        XCTAssertEqual(Array(dst[8..<12]), [20, 23, 26, 29] as [Double])
    }

    func testFirstIndexOutOfRange() {
        let values: [Int64] = [0, 3, 1, 4, -1, 2]
        values.withUnsafeBufferPointer { p in
            let b = p.baseAddress!
            XCTAssertEqual(firstIndexOutOfRange(b, shape: [6], strides: [1], offset: 0, bound: 4), 4)
            XCTAssertEqual(firstIndexOutOfRange(b, shape: [6], strides: [1], offset: 0, bound: 5), -1)
            XCTAssertNil(firstIndexOutOfRange(b, shape: [3], strides: [1], offset: 0, bound: 4))
            // Strided: elements 0, 1, 4 -> [0, 3, -1] as a [3] view with stride 2 over offset 0 -> 0, 1, -1
            XCTAssertEqual(firstIndexOutOfRange(b, shape: [3], strides: [2], offset: 0, bound: 4), -1)
            XCTAssertNil(firstIndexOutOfRange(b, shape: [2, 0], strides: [1, 1], offset: 0, bound: 1))
            // 2x2 transposed view of [0, 3, 1, 4]: row-major order 0, 1, 3, 4 -> first bad for bound 3 is 3.
            XCTAssertEqual(firstIndexOutOfRange(b, shape: [2, 2], strides: [1, 2], offset: 0, bound: 3), 3)
        }
    }

    func testOneHotFillMatchesNaive() {
        var rng = LCG(state: 3)
        for shape in [[5], [2, 3], [0], [1, 1], [3, 0, 2]] {
            for classes in [1, 4] {
                let (st, n) = Self.layout(shape, permuted: shape.count > 1, offset: 1)
                var labels = [Int32](repeating: 0, count: n)
                for m in ReduceFixture.multiIndices(shape) { labels[Self.offset(m, st, 1)] = Int32(rng.int(classes)) }
                let count = elementCount(shape)
                var dst = [Float](repeating: 0, count: count * classes)
                labels.withUnsafeBufferPointer { l in
                    dst.withUnsafeMutableBufferPointer { d in
                        oneHotFill(l.baseAddress!, shape: shape, strides: st, offset: 1, numClasses: classes, one: Float(1),
                                   d.baseAddress ?? UnsafeMutablePointer(bitPattern: 8)!)
                    }
                }
                var expected = [Float](repeating: 0, count: count * classes)
                for (k, m) in ReduceFixture.multiIndices(shape).enumerated() { expected[k * classes + Int(labels[Self.offset(m, st, 1)])] = 1 }
                XCTAssertEqual(dst, expected, "shape \(shape) classes \(classes)")
            }
        }
    }
}
